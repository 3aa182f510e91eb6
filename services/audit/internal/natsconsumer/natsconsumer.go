// Package natsconsumer feeds the audit log from JetStream: a durable pull
// consumer, shared by audit replicas, that stores each batch of lifecycle
// events in one transaction and acks only after the commit. Nothing is
// acked that is not stored, so an outage of NATS, of the store or of this
// process delays events but never loses them; the store's idempotent
// insert by event id makes the redeliveries that follow harmless.
package natsconsumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
)

// appender stores a batch of events atomically and idempotently;
// *audit.Service is the one in use.
type appender interface {
	Append(ctx context.Context, events []*eventsv1.LifecycleEvent) (audit.AppendResult, error)
}

// Options configure a Consumer. Zero values take the defaults noted.
type Options struct {
	// Bus names the stream and subjects.
	Bus eventbus.Config
	// Durable is the consumer name, shared by replicas; "audit" when empty.
	Durable string
	// BatchSize is the most events one pull fetches and one transaction
	// stores; 500 when 0. Under load pulls are full, so it sets how many
	// events share a commit (an fsync).
	BatchSize int
	// FetchWait bounds one pull; 100ms when 0. A pull ends when BatchSize
	// events have come or FetchWait has passed, so it is also the longest
	// an event waits while events are few. A pull that brings nothing
	// commits nothing: a short wait costs only a request to NATS.
	FetchWait time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering;
	// 30s when 0.
	AckWait time.Duration
	// MaxBackoff caps the wait between retries while NATS or the store is
	// down; 5s when 0.
	MaxBackoff time.Duration
	Logger     *slog.Logger
	// Registerer takes the consumer's metrics; a private registry when nil.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	if o.Durable == "" {
		o.Durable = "audit"
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 100 * time.Millisecond
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

// Consumer moves lifecycle events from JetStream into the audit log.
type Consumer struct {
	js   jetstream.JetStream
	app  appender
	opts Options
	log  *slog.Logger

	stored, duplicates, malformed, storeErrors prometheus.Counter
	pending                                    prometheus.Gauge
}

// New returns a Consumer reading through js into app and registers its
// metrics. It does not touch NATS; Run does.
func New(js jetstream.JetStream, app appender, opts Options) (*Consumer, error) {
	opts = opts.withDefaults()
	c := &Consumer{
		js: js, app: app, opts: opts,
		log: opts.Logger.With("component", "natsconsumer", "stream", opts.Bus.StreamName(), "consumer", opts.Durable),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "jitid", Subsystem: "audit", Name: "events_stored_total",
			Help: "Lifecycle events recorded in the audit log.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "jitid", Subsystem: "audit", Name: "events_duplicate_total",
			Help: "Lifecycle events skipped because their id was already recorded (redeliveries).",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "jitid", Subsystem: "audit", Name: "events_malformed_total",
			Help: "Messages on the event stream that were not lifecycle events; terminated, not stored.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "jitid", Subsystem: "audit", Name: "store_errors_total",
			Help: "Batches that could not be stored and were left for redelivery.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "jitid", Subsystem: "audit", Name: "consumer_pending",
			Help: "Events on the stream not yet delivered to the audit consumer, as of the last message.",
		}),
	}
	for _, m := range []prometheus.Collector{c.stored, c.duplicates, c.malformed, c.storeErrors, c.pending} {
		if err := opts.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("natsconsumer: register metrics: %w", err)
		}
	}
	return c, nil
}

// Connect dials NATS the way the audit service needs: it returns at once
// even when no server answers yet (RetryOnFailedConnect) and reconnects
// forever, so that the service starts before NATS and catches up once it
// is there. opts are added last, so tests can shorten ReconnectWait.
func Connect(url string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name("jitid-audit"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("natsconsumer: connect %s: %w", url, err)
	}
	return nc, nil
}

// Run consumes until ctx ends, then returns nil. It never gives up on NATS
// or the store: each failure is logged and retried with backoff.
func (c *Consumer) Run(ctx context.Context) error {
	var cons jetstream.Consumer
	backoff := newBackoff(c.opts.MaxBackoff)
	msgs := make([]jetstream.Msg, 0, c.opts.BatchSize)
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			if cons, err = c.setup(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				c.log.Warn("event stream not reachable; retrying", "error", err, "retry_in", backoff.peek())
				backoff.wait(ctx)
				continue
			}
			backoff.reset()
			c.log.Info("consuming lifecycle events", "filter", c.opts.Bus.Wildcard())
		}
		fctx, cancel := context.WithTimeout(ctx, c.opts.FetchWait)
		batch, err := cons.Fetch(c.opts.BatchSize, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			c.log.Warn("fetch from event stream failed", "error", err)
			cons = nil
			backoff.wait(ctx)
			continue
		}
		msgs = msgs[:0]
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		cancel()
		if len(msgs) > 0 {
			if err := c.handle(ctx, msgs); err != nil {
				c.storeErrors.Inc()
				c.log.Error("storing events failed; left for redelivery", "events", len(msgs), "error", err, "retry_in", backoff.peek())
				backoff.wait(ctx)
				continue
			}
			backoff.reset()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			// The consumer or stream may be gone (a NATS server that
			// lost its store); setting up again recreates them.
			c.log.Warn("fetch from event stream ended with an error", "error", err)
			cons = nil
			backoff.wait(ctx)
		}
	}
	return nil
}

// setup makes sure the stream and the durable consumer exist; both calls
// are idempotent, so every replica makes them at every (re)start.
func (c *Consumer) setup(ctx context.Context) (jetstream.Consumer, error) {
	// While NATS is down a request waits for this long, so it is also
	// how often the outage is logged.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := eventbus.EnsureStream(ctx, c.js, c.opts.Bus)
	if err != nil {
		return nil, err
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       c.opts.Durable,
		Description:   "jitid audit log",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.opts.AckWait,
		FilterSubject: c.opts.Bus.Wildcard(),
		// Room for a few batches per replica in flight.
		MaxAckPending: 10 * c.opts.BatchSize,
	})
	if err != nil {
		return nil, fmt.Errorf("natsconsumer: consumer %s: %w", c.opts.Durable, err)
	}
	return cons, nil
}

// maxLoggedError bounds what a malformed message can put into the log:
// decode errors quote fragments of the input, and the input is untrusted.
const maxLoggedError = 200

// handle stores the well-formed messages of one fetch in one transaction
// and acks them after the commit. A malformed message is terminated at
// once, so it cannot block the stream; a store error NAKs the batch with a
// delay, so it comes back.
func (c *Consumer) handle(ctx context.Context, msgs []jetstream.Msg) error {
	events := make([]*eventsv1.LifecycleEvent, 0, len(msgs))
	good := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		ev, err := eventbus.Decode(m.Data())
		if err != nil {
			c.malformed.Inc()
			msg := err.Error()
			if len(msg) > maxLoggedError {
				msg = msg[:maxLoggedError] + "…"
			}
			// The subject and error only: never the body.
			c.log.Warn("malformed message on event stream; terminated", "subject", m.Subject(), "error", msg)
			if err := m.Term(); err != nil {
				c.log.Warn("term malformed message", "subject", m.Subject(), "error", err)
			}
			continue
		}
		events = append(events, ev)
		good = append(good, m)
	}
	if meta, err := msgs[len(msgs)-1].Metadata(); err == nil {
		c.pending.Set(float64(meta.NumPending))
	}
	if len(events) == 0 {
		return nil
	}
	// A batch already fetched is finished even when shutdown begins, so
	// that its messages are acked now rather than redelivered after
	// AckWait.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	res, err := c.app.Append(sctx, events)
	if err != nil {
		for _, m := range good {
			_ = m.NakWithDelay(c.opts.MaxBackoff)
		}
		return err
	}
	// An ack that is lost only means a redelivery, which the store skips.
	for _, m := range good {
		if err := m.Ack(); err != nil {
			c.log.Debug("ack failed; the event will be redelivered and skipped", "subject", m.Subject(), "error", err)
		}
	}
	c.stored.Add(float64(res.Stored))
	c.duplicates.Add(float64(res.Duplicates))
	if res.Duplicates > 0 {
		c.log.Debug("skipped events already recorded", "duplicates", res.Duplicates)
	}
	return nil
}

// backoff doubles a wait from 100ms up to a cap.
type backoff struct {
	cur, max time.Duration
}

func newBackoff(limit time.Duration) *backoff {
	return &backoff{cur: 100 * time.Millisecond, max: limit}
}

func (b *backoff) peek() time.Duration { return b.cur }

func (b *backoff) reset() { b.cur = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.cur = min(2*b.cur, b.max)
}
