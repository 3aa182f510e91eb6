// Package relay moves lifecycle events from the issuer's Redis outbox
// streams to NATS JetStream, at least once, and removes an entry only after
// JetStream acknowledged it. Each event is published with Nats-Msg-Id = its
// event id, every retry with the same id, so JetStream drops the copies of a
// publish whose outcome was unknown (within eventbus.DefaultDuplicateWindow)
// and audit, deduplicating by event id, records each event once.
//
// An entry holds its event's CloudEvents envelope (field "data"), or the
// event as protobuf binary (field "pb": the expired events, which the store
// keeps unencoded until they are due), which the relay encodes with
// eventbus.Encode: subscribers get the same envelope either way.
//
// Replicas share one consumer group per outbox stream, so each entry is
// handed to one relay at a time; entries left pending by a relay that died
// are claimed by another after Options.ClaimIdle.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// Defaults of Options.
const (
	DefaultGroup          = "jitid-relay"
	DefaultBatch          = 128
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultPublishTimeout = 5 * time.Second
	DefaultClaimIdle      = 30 * time.Second
	DefaultMaxBackoff     = 5 * time.Second
)

// Options configure a Relay.
type Options struct {
	// Streams are the outbox streams to relay, one per shard: the store's
	// redisstore.OutboxKeys. Required.
	Streams []string
	// Events names the JetStream stream, which Run ensures exists.
	Events eventbus.Config
	// Source is the CloudEvents source of the events the relay encodes
	// itself (those the store keeps as protobuf binary, field "pb"):
	// eventbus.DefaultSource when empty. Give it the store's Source.
	Source string
	// Group is the consumer group shared by relay replicas (DefaultGroup).
	Group string
	// Consumer names this replica in the group (hostname-pid-random when
	// empty). Two live relays must not share a name.
	Consumer string
	// Batch is how many entries are read per stream at a time (DefaultBatch).
	Batch int
	// PollInterval is the wait between polls when every stream is empty
	// (DefaultPollInterval); Notify cuts it short.
	PollInterval time.Duration
	// PublishTimeout is how long a batch waits for its acknowledgements
	// (DefaultPublishTimeout). Entries not acknowledged by then stay pending
	// and are published again with the same message id. Create the
	// JetStream with jetstream.WithPublishAsyncTimeout of the same length so
	// that its own bookkeeping of unanswered publishes is released too.
	PublishTimeout time.Duration
	// ClaimIdle is how long an entry stays pending with another consumer
	// before this relay claims it (DefaultClaimIdle). Keep it well above
	// PublishTimeout, and the sum well inside the duplicate window.
	ClaimIdle time.Duration
	// MaxBackoff caps the wait after failures (DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Logger is slog.Default() when nil.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.Consumer == "" {
		o.Consumer = consumerName()
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = DefaultClaimIdle
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Source == "" {
		o.Source = eventbus.DefaultSource
	}
	return o
}

func consumerName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "relay"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
}

// Relay publishes outbox entries to JetStream.
type Relay struct {
	rdb  redis.UniversalClient
	js   jetstream.JetStream
	opts Options
	wake chan struct{}

	// pending[i] is true while stream i may hold entries delivered to this
	// consumer and not acknowledged: at start, after a failed publish and
	// after a claim. While it is, those are retried before new ones are read.
	pending []bool
	// lastClaim is when entries of dead consumers were last claimed.
	lastClaim time.Time
	// lastBacklog is when the backlog gauge was last refreshed.
	lastBacklog time.Time
	running     atomic.Bool

	published  prometheus.Counter
	duplicates prometheus.Counter
	retries    prometheus.Counter
	failures   prometheus.Counter
	dropped    prometheus.Counter
	backlog    prometheus.Gauge
}

// New returns a Relay from the outbox streams of rdb to js. Run starts it.
// Give it a client of its own (a small pool) rather than the one requests
// use: behind an overloaded request pool its round trips would queue too.
func New(rdb redis.UniversalClient, js jetstream.JetStream, opts Options) *Relay {
	opts = opts.withDefaults()
	r := &Relay{
		rdb:     rdb,
		js:      js,
		opts:    opts,
		wake:    make(chan struct{}, 1),
		pending: make([]bool, len(opts.Streams)),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitid_issuer_outbox_published_total",
			Help: "Outbox events acknowledged by JetStream and removed from the outbox.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitid_issuer_outbox_duplicates_total",
			Help: "Publishes JetStream acknowledged as duplicates of an earlier one (same event id).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitid_issuer_outbox_retries_total",
			Help: "Outbox events published again after a failed, timed-out or abandoned publish.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitid_issuer_outbox_publish_failures_total",
			Help: "Publishes that failed or timed out; their events stay in the outbox.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitid_issuer_outbox_malformed_total",
			Help: "Outbox entries without an event id, subject or data, logged and removed.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitid_issuer_outbox_backlog",
			Help: "Events in the outbox not yet acknowledged by JetStream.",
		}),
	}
	for i := range r.pending {
		r.pending[i] = true
	}
	return r
}

// Collectors returns the relay's metrics, for the caller to register.
func (r *Relay) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.published, r.duplicates, r.retries, r.failures, r.dropped, r.backlog}
}

// Notify wakes the relay when it waits for new entries. It never blocks; the
// store calls it after each write to the outbox.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends, then returns nil. It first ensures the
// JetStream stream and the consumer groups exist, retrying (and logging)
// while NATS or Redis is unreachable. It returns an error only when misused
// (no streams, or run twice at once).
func (r *Relay) Run(ctx context.Context) error {
	if len(r.opts.Streams) == 0 {
		return errors.New("relay: no outbox streams")
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: already running")
	}
	defer r.running.Store(false)

	if !r.retry(ctx, "ensure JetStream stream", func() error {
		_, err := eventbus.EnsureStream(ctx, r.js, r.opts.Events)
		return err
	}) {
		return nil
	}
	if !r.retry(ctx, "create outbox consumer groups", func() error { return r.createGroups(ctx) }) {
		return nil
	}
	r.opts.Logger.Info("outbox relay running", "streams", len(r.opts.Streams), "consumer", r.opts.Consumer)

	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := r.step(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			backoff = min(max(2*backoff, r.opts.PollInterval), r.opts.MaxBackoff)
			if backoff == r.opts.PollInterval || backoff == r.opts.MaxBackoff {
				r.opts.Logger.Warn("outbox relay: retrying", "err", err, "backoff", backoff)
			}
			r.sleep(ctx, backoff, false)
		case n == 0:
			backoff = 0
			r.sleep(ctx, r.opts.PollInterval, true)
		default:
			backoff = 0
		}
	}
	return nil
}

// retry calls f until it succeeds or ctx ends (false), logging failures.
func (r *Relay) retry(ctx context.Context, what string, f func() error) bool {
	backoff := r.opts.PollInterval
	for {
		err := f()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.opts.Logger.Warn("outbox relay: cannot "+what+" yet; retrying", "err", err, "backoff", backoff)
		if !r.sleep(ctx, backoff, false) {
			return false
		}
		backoff = min(2*backoff, r.opts.MaxBackoff)
	}
}

// sleep waits d, or until Notify when wakeable; false when ctx ended.
func (r *Relay) sleep(ctx context.Context, d time.Duration, wakeable bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if wakeable {
		wake = r.wake
	}
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

func (r *Relay) createGroups(ctx context.Context) error {
	for _, s := range r.opts.Streams {
		// "0", not "$": entries written before the group existed are relayed too.
		err := r.rdb.XGroupCreateMkStream(ctx, s, r.opts.Group, "0").Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("relay: create group on %s: %w", s, err)
		}
	}
	return nil
}

// entry is one outbox entry read for publishing.
type entry struct {
	stream int
	msg    redis.XMessage
	retry  bool
}

// errNotConnected means NATS is unreachable; entries wait in the outbox.
var errNotConnected = errors.New("relay: not connected to NATS; events wait in the outbox")

// step publishes one batch per stream; it returns how many entries it read.
func (r *Relay) step(ctx context.Context) (int, error) {
	r.refreshBacklog(ctx)
	if !r.js.Conn().IsConnected() {
		// Publishing now would only fill the client's reconnect buffer.
		return 0, errNotConnected
	}
	if time.Since(r.lastClaim) >= r.opts.ClaimIdle/2 {
		if err := r.claim(ctx); err != nil {
			return 0, err
		}
		r.lastClaim = time.Now()
	}
	entries, err := r.read(ctx)
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return 0, nil
	}
	return len(entries), r.publish(ctx, entries)
}

// read returns this consumer's pending entries of the streams that may have
// some, and new entries of the others, in one round trip each.
func (r *Relay) read(ctx context.Context) ([]entry, error) {
	var entries []entry
	for _, retry := range []bool{true, false} {
		var idx []int
		for i, p := range r.pending {
			if p == retry {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			continue
		}
		id := ">"
		if retry {
			id = "0"
		}
		cmds := make([]*redis.XStreamSliceCmd, len(idx))
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for k, i := range idx {
				cmds[k] = p.XReadGroup(ctx, &redis.XReadGroupArgs{
					Group: r.opts.Group, Consumer: r.opts.Consumer,
					Streams: []string{r.opts.Streams[i], id}, Count: int64(r.opts.Batch), Block: -1,
				})
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			if redis.HasErrorPrefix(err, "NOGROUP") {
				// The stream was deleted under us: recreate its group.
				if gerr := r.createGroups(ctx); gerr != nil {
					return nil, gerr
				}
			}
			return nil, fmt.Errorf("relay: read outbox: %w", err)
		}
		for k, i := range idx {
			streams, _ := cmds[k].Result()
			n := 0
			for _, s := range streams {
				for _, m := range s.Messages {
					entries = append(entries, entry{stream: i, msg: m, retry: retry})
					n++
				}
			}
			if retry && n == 0 {
				r.pending[i] = false
			}
		}
	}
	return entries, nil
}

// claim takes over entries pending too long with other consumers (a relay
// that died mid-batch); they are published at the next read of this
// consumer's pending entries.
func (r *Relay) claim(ctx context.Context) error {
	for i, s := range r.opts.Streams {
		start := "0-0"
		for {
			msgs, next, err := r.rdb.XAutoClaimJustID(ctx, &redis.XAutoClaimArgs{
				Stream: s, Group: r.opts.Group, Consumer: r.opts.Consumer,
				MinIdle: r.opts.ClaimIdle, Start: start, Count: int64(r.opts.Batch),
			}).Result()
			if err != nil {
				if redis.HasErrorPrefix(err, "NOGROUP") {
					return r.createGroups(ctx)
				}
				return fmt.Errorf("relay: claim idle entries of %s: %w", s, err)
			}
			if len(msgs) > 0 {
				r.pending[i] = true
				r.opts.Logger.Info("outbox relay: claimed entries of another consumer", "stream", s, "entries", len(msgs))
			}
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
		r.forgetGoneConsumers(ctx, s)
	}
	return nil
}

// goneConsumerIdle is how long a consumer of the group must have been silent,
// with nothing pending, before it is taken for a replica that is gone.
const goneConsumerIdle = time.Hour

// forgetGoneConsumers removes from the group the consumers of replicas that
// have gone (every restart names a new one), once nothing is pending with
// them. Failures are ignored: this is housekeeping.
func (r *Relay) forgetGoneConsumers(ctx context.Context, stream string) {
	consumers, err := r.rdb.XInfoConsumers(ctx, stream, r.opts.Group).Result()
	if err != nil {
		return
	}
	for _, c := range consumers {
		if c.Name != r.opts.Consumer && c.Pending == 0 && c.Idle > goneConsumerIdle {
			_ = r.rdb.XGroupDelConsumer(ctx, stream, r.opts.Group, c.Name).Err()
		}
	}
}

// publish sends the entries asynchronously, waits for the batch's acks and
// removes the acknowledged entries from the outbox. A failed or unanswered
// publish leaves its entry pending, to be sent again with the same id.
func (r *Relay) publish(ctx context.Context, entries []entry) error {
	type inflight struct {
		e entry
		f jetstream.PubAckFuture
	}
	expectStream := jetstream.WithExpectStream(r.opts.Events.StreamName())
	var sent []inflight
	done := make([][]string, len(r.opts.Streams)) // entry ids to ack and delete, per stream
	var firstErr error
	fail := func(e entry, err error) {
		r.failures.Inc()
		r.pending[e.stream] = true
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, e := range entries {
		id, _ := e.msg.Values["id"].(string)
		subject, _ := e.msg.Values["subject"].(string)
		data, err := r.envelope(id, e.msg.Values)
		if id == "" || subject == "" || len(data) == 0 {
			// Deleted while pending (nil values), or not written by the
			// store: nothing that could ever be published.
			if len(e.msg.Values) > 0 {
				r.dropped.Inc()
				r.opts.Logger.Error("outbox relay: dropping malformed outbox entry",
					"stream", r.opts.Streams[e.stream], "entry", e.msg.ID, "fields", e.msg.Values, "err", err)
			}
			done[e.stream] = append(done[e.stream], e.msg.ID)
			continue
		}
		if e.retry {
			r.retries.Inc()
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		f, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(id), expectStream)
		if err != nil {
			fail(e, fmt.Errorf("relay: publish event %s: %w", id, err))
			continue
		}
		sent = append(sent, inflight{e, f})
	}

	timeout := time.NewTimer(r.opts.PublishTimeout)
	defer timeout.Stop()
	waiting := true
	outcome := func(f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
		if waiting {
			select {
			case ack := <-f.Ok():
				return ack, nil
			case err := <-f.Err():
				return nil, err
			case <-timeout.C:
				waiting = false
			case <-ctx.Done():
				waiting = false
			}
		}
		// Past the deadline, take only outcomes already in: an
		// unanswered publish is an unknown outcome, retried later.
		select {
		case ack := <-f.Ok():
			return ack, nil
		case err := <-f.Err():
			return nil, err
		default:
			return nil, fmt.Errorf("no acknowledgement within %v", r.opts.PublishTimeout)
		}
	}
	// JetStream answers one connection's publishes in order: waiting for
	// the last answer first takes one wakeup for the batch, where waiting
	// for each in turn takes about one per answer.
	var lastAck *jetstream.PubAck
	var lastErr error
	if len(sent) > 0 {
		lastAck, lastErr = outcome(sent[len(sent)-1].f)
	}
	acked := 0
	for i, s := range sent {
		var ack *jetstream.PubAck
		var err error
		if i == len(sent)-1 {
			ack, err = lastAck, lastErr
		} else {
			ack, err = outcome(s.f)
		}
		if err != nil {
			fail(s.e, fmt.Errorf("relay: publish event %v: %w", s.e.msg.Values["id"], err))
			continue
		}
		if ack.Duplicate {
			r.duplicates.Inc()
		}
		acked++
		done[s.e.stream] = append(done[s.e.stream], s.e.msg.ID)
	}

	if err := r.remove(context.WithoutCancel(ctx), done); err != nil {
		return err
	}
	r.published.Add(float64(acked))
	return firstErr
}

// envelope returns the CloudEvents envelope of an entry: its field "data"
// as it is, or the envelope of its field "pb", a LifecycleEvent in protobuf
// binary (an expired event: the store keeps those unencoded until they are
// due), encoded here exactly as the store would have. Nil when the entry
// has neither, or its event is not the one its id names.
func (r *Relay) envelope(id string, values map[string]any) ([]byte, error) {
	if data, _ := values["data"].(string); data != "" {
		return []byte(data), nil
	}
	pb, _ := values["pb"].(string)
	if pb == "" {
		return nil, nil
	}
	ev := &eventsv1.LifecycleEvent{}
	if err := proto.Unmarshal([]byte(pb), ev); err != nil {
		return nil, fmt.Errorf("relay: event %s: %w", id, err)
	}
	if ev.GetId() != id {
		return nil, fmt.Errorf("relay: entry names event %q, holds event %q", id, ev.GetId())
	}
	return eventbus.Encode(r.opts.Source, ev)
}

// remove deletes and then acknowledges entries, in one pipeline. Deleting
// first makes a crash in between harmless: an entry deleted but still
// pending comes back from the pending read without fields and is then only
// acknowledged, while one acknowledged but not deleted would never be
// delivered again and stay in the outbox for good. (No MULTI: a cluster
// client cannot run one across the shards' slots.)
func (r *Relay) remove(ctx context.Context, done [][]string) error {
	if !slices.ContainsFunc(done, func(ids []string) bool { return len(ids) > 0 }) {
		return nil
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ids := range done {
			if len(ids) == 0 {
				continue
			}
			p.XDel(ctx, r.opts.Streams[i], ids...)
			p.XAck(ctx, r.opts.Streams[i], r.opts.Group, ids...)
		}
		return nil
	})
	if err != nil {
		// The events are in JetStream; their entries stay pending and are
		// published again, and deduplicated, after this relay reconnects.
		for i, ids := range done {
			if len(ids) > 0 {
				r.pending[i] = true
			}
		}
		return fmt.Errorf("relay: remove published entries: %w", err)
	}
	return nil
}

// refreshBacklog sets the backlog gauge at most once a second.
func (r *Relay) refreshBacklog(ctx context.Context) {
	if time.Since(r.lastBacklog) < time.Second {
		return
	}
	r.lastBacklog = time.Now()
	n, err := r.Backlog(ctx)
	if err == nil {
		r.backlog.Set(float64(n))
	}
}

// Backlog returns the number of events in the outbox streams: not yet
// published, or published and not yet removed.
func (r *Relay) Backlog(ctx context.Context) (int64, error) {
	cmds := make([]*redis.IntCmd, len(r.opts.Streams))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range r.opts.Streams {
			cmds[i] = p.XLen(ctx, s)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("relay: outbox backlog: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
