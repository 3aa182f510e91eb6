package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/embeddednats"
	"github.com/jitid/jitid/testkit/testserver"
)

const publishTimeout = time.Second

// env is one test's outbox, store and JetStream stream.
type env struct {
	rdb    *redis.Client
	store  *redisstore.Store
	events eventbus.Config
	prefix string
	js     jetstream.JetStream
}

func newEnv(t testing.TB, natsURL string) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ns := testserver.Namespace(t)
	e := &env{rdb: rdb, prefix: ns, events: eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}}
	e.store = redisstore.New(rdb, redisstore.Options{Prefix: ns, Events: e.events})
	e.js = connect(t, natsURL)
	return e
}

func connect(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// startRelay runs a relay until the test ends.
func (e *env) startRelay(t *testing.T, opts relay.Options) *relay.Relay {
	t.Helper()
	opts.Streams = e.store.OutboxKeys()
	opts.Events = e.events
	opts.PublishTimeout = publishTimeout
	opts.PollInterval = 20 * time.Millisecond
	opts.MaxBackoff = 200 * time.Millisecond
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := relay.New(e.rdb, e.js, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	return r
}

func randID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// issue writes a credential and returns its issued event's id.
func (e *env) issue(t *testing.T) string {
	t.Helper()
	c := &issuer.Credential{
		ID:        randID("cred-"),
		Agent:     &identityv1.Agent{Id: "agent-1"},
		Delegator: &identityv1.Delegator{Id: "user-1"},
		Task:      &identityv1.Task{Id: randID("task-")},
		Scopes:    []string{"read"},
		IssuedAt:  time.Now(),
		ExpiresAt: time.Now().Add(time.Hour),
	}
	ev := func(typ eventsv1.EventType) *eventsv1.LifecycleEvent {
		return &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: typ, Time: timestamppb.Now(), CredentialId: c.ID, Task: c.Task}
	}
	issued := ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED)
	if err := e.store.Issue(context.Background(), c, issued, ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)); err != nil {
		t.Fatal(err)
	}
	return issued.GetId()
}

// streamMsgs returns every message in the stream.
func (e *env) streamMsgs(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, e.events.StreamName())
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// streamIDs returns the event id of every message in the stream, after
// checking that its Nats-Msg-Id is the event id and its subject the event's.
func (e *env) streamIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, m := range e.streamMsgs(t) {
		seq := m.Sequence
		ev, err := eventbus.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.GetId() {
			t.Errorf("message %d: Nats-Msg-Id %q, event id %q", seq, got, ev.GetId())
		}
		if want := e.events.Subject(ev.GetType()); m.Subject != want {
			t.Errorf("message %d: subject %q, want %q", seq, m.Subject, want)
		}
		ids = append(ids, ev.GetId())
	}
	return ids
}

// warnings counts the warnings a relay logs: a test waits on them to know
// the relay met a dependency that is down.
type warnings struct{ n atomic.Int64 }

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// checkExactlyOnce checks that the stream holds each wanted event once and
// nothing else, and that the outbox is empty.
func (e *env) checkExactlyOnce(t *testing.T, r *relay.Relay, want []string) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("%d events in the stream", len(want)), 30*time.Second, 50*time.Millisecond, func() (int, bool) {
		n := len(e.streamIDs(t))
		return n, n >= len(want)
	})
	testkit.Eventually(t, "an empty outbox", 10*time.Second, 50*time.Millisecond, func() (string, bool) {
		n, err := r.Backlog(context.Background())
		return fmt.Sprintf("backlog %d, %v", n, err), err == nil && n == 0
	})
	got := map[string]int{}
	for _, id := range e.streamIDs(t) {
		got[id]++
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("event %s in the stream %d times, want 1", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("stream holds %d distinct events, want %d", len(got), len(want))
	}
}

func TestRelayPublishesEveryEventOnceWithItsID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	var want []string
	for range 20 {
		want = append(want, e.issue(t))
	}
	// Two replicas share the outbox.
	r1 := e.startRelay(t, relay.Options{})
	r2 := e.startRelay(t, relay.Options{})
	for range 20 {
		want = append(want, e.issue(t))
	}
	r1.Notify()
	e.checkExactlyOnce(t, r1, want)
	published := testutil.ToFloat64(r1.Collectors()[0]) + testutil.ToFloat64(r2.Collectors()[0])
	if published != float64(len(want)) {
		t.Errorf("published counters sum to %v, want %d", published, len(want))
	}
}

func TestRelayDeliversOnceAcrossNATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := embeddednats.ForTest(t, -1, dir)
	port := embeddednats.Port(srv)
	e := newEnv(t, srv.ClientURL())
	var warned warnings
	r := e.startRelay(t, relay.Options{Logger: slog.New(&warned)})
	want := []string{e.issue(t)}
	testkit.Eventually(t, "the first event in the stream", 10*time.Second, 50*time.Millisecond, func() (int, bool) {
		n := len(e.streamIDs(t))
		return n, n == 1
	})

	// NATS stops while the 100 are being issued and relayed, so some
	// publishes are in flight when it goes: their outcome is unknown.
	// The last 70 are issued once NATS is down, so that the outbox holds
	// events while it is.
	issued := make(chan []string)
	relaying, natsDown := make(chan struct{}), make(chan struct{})
	go func() {
		var ids []string
		for i := range 100 {
			ids = append(ids, e.issue(t))
			if i == 29 {
				close(relaying)
				<-natsDown
			}
		}
		issued <- ids
	}()
	<-relaying
	testkit.Eventually(t, "the relay publishing the first events", 10*time.Second, 5*time.Millisecond, func() (float64, bool) {
		n := testutil.ToFloat64(r.Collectors()[0])
		return n, n > 1
	})
	before := warned.n.Load()
	srv.Shutdown()
	srv.WaitForShutdown()
	close(natsDown)
	want = append(want, <-issued...)
	// A failed publish, or a step that finds the connection down, warns.
	testkit.Eventually(t, "a warning from the relay meeting NATS down", 10*time.Second, 20*time.Millisecond, func() (int64, bool) {
		n := warned.n.Load() - before
		return n, n > 0
	})
	if n, err := r.Backlog(context.Background()); err != nil || n == 0 {
		t.Errorf("backlog with NATS down = %d, %v; want events waiting", n, err)
	}
	embeddednats.ForTest(t, port, dir)
	e.checkExactlyOnce(t, r, want)
	t.Logf("published %v, retries %v, duplicates %v, failures %v", testutil.ToFloat64(r.Collectors()[0]),
		testutil.ToFloat64(r.Collectors()[2]), testutil.ToFloat64(r.Collectors()[1]), testutil.ToFloat64(r.Collectors()[3]))
}

func TestRelayRepublishesUnknownOutcomeWithTheSameID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	ctx := context.Background()
	if _, err := eventbus.EnsureStream(ctx, e.js, e.events); err != nil {
		t.Fatal(err)
	}
	id := e.issue(t)
	// A relay published the entry and died before removing it.
	msgs, err := e.rdb.XRange(ctx, outboxOf(t, e), "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("outbox = %v, %v", msgs, err)
	}
	v := msgs[0].Values
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: v["subject"].(string), Data: []byte(v["data"].(string))}, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	r := e.startRelay(t, relay.Options{})
	e.checkExactlyOnce(t, r, []string{id})
	if got := testutil.ToFloat64(r.Collectors()[1]); got != 1 {
		t.Errorf("duplicates = %v, want 1", got)
	}
}

func TestRelayClaimsEntriesOfADeadReplica(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	ctx := context.Background()
	var want []string
	for range 10 {
		want = append(want, e.issue(t))
	}
	// A replica read every entry and died before publishing.
	for _, s := range e.store.OutboxKeys() {
		if err := e.rdb.XGroupCreateMkStream(ctx, s, relay.DefaultGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: relay.DefaultGroup, Consumer: "dead", Streams: []string{s, ">"}, Block: -1}).Err(); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
	}
	r := e.startRelay(t, relay.Options{ClaimIdle: 300 * time.Millisecond})
	e.checkExactlyOnce(t, r, want)
	if got := testutil.ToFloat64(r.Collectors()[2]); got != float64(len(want)) {
		t.Errorf("retries = %v, want %d (every claimed entry)", got, len(want))
	}
}

func TestRunWaitsForNATS(t *testing.T) {
	t.Parallel()
	port := embeddednats.PortForLater(t)
	// No NATS yet: the relay retries ensuring the stream, and delivers once
	// NATS comes.
	e := newEnv(t, "nats://127.0.0.1:"+strconv.Itoa(port))
	id := e.issue(t)
	var warned warnings
	r := e.startRelay(t, relay.Options{Logger: slog.New(&warned)})
	testkit.Eventually(t, "the relay warning that NATS is not there yet", 10*time.Second, 10*time.Millisecond, func() (int64, bool) {
		n := warned.n.Load()
		return n, n > 0
	})
	embeddednats.ForTest(t, port, t.TempDir())
	e.checkExactlyOnce(t, r, []string{id})
}

func TestRunRejectsMisuse(t *testing.T) {
	t.Parallel()
	r := relay.New(nil, nil, relay.Options{})
	if err := r.Run(context.Background()); err == nil {
		t.Error("Run() without streams = nil, want an error")
	}
}

func outboxOf(t *testing.T, e *env) string {
	t.Helper()
	for _, s := range e.store.OutboxKeys() {
		if e.rdb.XLen(context.Background(), s).Val() > 0 {
			return s
		}
	}
	t.Fatal("empty outbox")
	return ""
}

// TestRelayPublishesExpiredEventsAsIfEncodedAtIssue: the store keeps
// expired events as protobuf and the relay encodes them; each message on
// the stream must be byte for byte the envelope the store would have
// encoded at issue (same source, id, subject, data).
func TestRelayPublishesExpiredEventsAsIfEncodedAtIssue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	ctx := context.Background()
	const source = "urn:jitid:test-issuer"
	e.store = redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events, Source: source})
	want := map[string][]byte{} // event id → envelope
	now := time.Now()
	for i := range 20 {
		c := &issuer.Credential{
			ID:        randID("cred-"),
			Issuer:    "https://jitid.test",
			Audience:  "jitid",
			Agent:     &identityv1.Agent{Id: "agent:" + strconv.Itoa(i), Platform: "p", Attributes: map[string]string{"model": "m1", "runtime": "r\u00e9"}},
			Delegator: &identityv1.Delegator{Id: "user-1", Attributes: map[string]string{"region": "eu"}, TimeZone: "Europe/Paris"},
			Task:      &identityv1.Task{Id: randID("task-"), Purpose: "a \"quoted\" <purpose> & more", DeadlineTime: timestamppb.New(now.Add(time.Hour))},
			Scopes:    []string{"tickets:read", "tickets:comment"},
			IssuedAt:  now,
			ExpiresAt: now.Add(time.Duration(i+1) * time.Millisecond),
		}
		ev := func(typ eventsv1.EventType, at time.Time) *eventsv1.LifecycleEvent {
			return &eventsv1.LifecycleEvent{
				Id: randID("ev-"), Type: typ, Time: timestamppb.New(at), CredentialId: c.ID,
				Agent: c.Agent, Delegator: c.Delegator, Task: c.Task, Scopes: c.Scopes, Audience: c.Audience,
				IssueTime: timestamppb.New(c.IssuedAt), ExpireTime: timestamppb.New(c.ExpiresAt), Issuer: c.Issuer,
				Reason: "expired", AgentChain: []string{"agent:parent"},
			}
		}
		issued, expired := ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, now), ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c.ExpiresAt)
		if err := e.store.Issue(ctx, c, issued, expired); err != nil {
			t.Fatal(err)
		}
		for _, ev := range []*eventsv1.LifecycleEvent{issued, expired} {
			data, err := eventbus.Encode(source, ev)
			if err != nil {
				t.Fatal(err)
			}
			want[ev.GetId()] = data
		}
	}
	if n, err := e.store.SweepExpired(ctx, now.Add(time.Minute), 0); err != nil || n != 20 {
		t.Fatalf("SweepExpired() = %d, %v; want 20", n, err)
	}

	r := e.startRelay(t, relay.Options{Source: source})
	e.checkExactlyOnce(t, r, slices.Collect(maps.Keys(want)))
	for _, m := range e.streamMsgs(t) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if !bytes.Equal(m.Data, want[id]) {
			t.Errorf("event %s on the stream:\n%s\nwant:\n%s", id, m.Data, want[id])
		}
	}
}
