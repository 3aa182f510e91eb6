package natsconsumer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/natsconsumer"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/embeddednats"
	"github.com/jitid/jitid/testkit/testserver"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func event(i int) *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{
		Id:           fmt.Sprintf("evt-%04d", i),
		Type:         eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time:         timestamppb.New(time.Date(2026, 11, 29, 10, 0, i, 0, time.UTC)),
		CredentialId: fmt.Sprintf("cred-%d", i),
		Agent:        &identityv1.Agent{Id: "agent-1"},
		Delegator:    &identityv1.Delegator{Id: "user:alice"},
		Task:         &identityv1.Task{Id: "task-1"},
	}
}

func ids(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, event(i).GetId())
	}
	return out
}

// env is one test's world: its own stream on a NATS server and its own
// SQLite log.
type env struct {
	t   *testing.T
	url string
	bus eventbus.Config
	svc *audit.Service
	st  *sqlstore.Store
	// log is the consumers' logger; quiet when nil.
	log *slog.Logger
}

// warnings counts the warnings a consumer logs: a test waits on them to
// know the consumer met NATS down.
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

func newEnv(t *testing.T, url string) *env {
	t.Helper()
	ns := testserver.Namespace(t)
	st, err := sqlstore.Open("sqlite://" + filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, url: url, bus: eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}, svc: audit.New(st, audit.Options{}), st: st}
}

// publish sends one message with the given Nats-Msg-Id, as the issuer's
// outbox relay does.
func (e *env) publish(subject string, data []byte, msgID string) {
	e.t.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := eventbus.EnsureStream(ctx, js, e.bus); err != nil {
		e.t.Fatal(err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) publishEvent(i int, msgID string) {
	e.t.Helper()
	ev := event(i)
	b, err := eventbus.Encode("", ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if msgID == "" {
		msgID = ev.GetId()
	}
	e.publish(e.bus.Subject(ev.GetType()), b, msgID)
}

// run starts a consumer on its own connection; the returned stop ends it
// and waits until Run has returned.
func (e *env) run(app interface {
	Append(context.Context, []*eventsv1.LifecycleEvent) (audit.AppendResult, error)
}, reg *prometheus.Registry, natsOpts ...nats.Option) (stop func()) {
	e.t.Helper()
	log := quiet
	if e.log != nil {
		log = e.log
	}
	nc, err := natsconsumer.Connect(e.url, log, natsOpts...)
	if err != nil {
		e.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := natsconsumer.New(js, app, natsconsumer.Options{
		Bus: e.bus, Durable: "audit", FetchWait: 200 * time.Millisecond,
		AckWait: 2 * time.Second, MaxBackoff: 200 * time.Millisecond, Logger: log, Registerer: reg,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		<-done
		nc.Close()
	}
	e.t.Cleanup(stop)
	return stop
}

// waitForIDs waits until the log holds exactly want, in any order, and
// fails on a duplicate at any point.
func (e *env) waitForIDs(want []string) {
	e.t.Helper()
	// On a timeout the diff below says what is missing.
	got, _ := testkit.Poll(fmt.Sprintf("%d events in the log", len(want)), 30*time.Second, 20*time.Millisecond, func() ([]string, bool) {
		page, err := e.svc.QueryEvents(context.Background(), audit.PageRequest{PageSize: audit.MaxPageSize})
		if err != nil {
			e.t.Fatal(err)
		}
		var got []string
		for _, r := range page.Records {
			got = append(got, r.EventID)
		}
		sort.Strings(got)
		return got, len(got) >= len(want)
	})
	if diff := cmp.Diff(want, got); diff != "" {
		e.t.Fatalf("event ids in the log (-want +got):\n%s", diff)
	}
}

func (e *env) verifyOK(n int64) {
	e.t.Helper()
	v, err := e.svc.Verify(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if diff := cmp.Diff(audit.Verification{OK: true, Checked: n}, v); diff != "" {
		e.t.Errorf("Verify() (-want +got):\n%s", diff)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func waitCounter(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	// A count past want is as wrong as one short of it: compared below.
	got, _ := testkit.Poll(fmt.Sprintf("%s reaching %v", name, want), 30*time.Second, 20*time.Millisecond, func() (float64, bool) {
		got := counter(t, reg, name)
		return got, got >= want
	})
	if got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func TestConsumerStoresEachEventOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	for i := range 10 {
		e.publishEvent(i, "")
	}
	// The same event under other message ids: JetStream's duplicate
	// window does not catch these, the audit log must.
	e.publishEvent(3, "relay-retry-3")
	e.publishEvent(7, "relay-retry-7")
	e.publish(e.bus.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED), []byte("{not json"), "bad-1")
	e.publish(e.bus.SubjectPrefix+".credential.revoked", []byte(`{"specversion":"1.0","id":"x","type":"dev.jitid.credential.revoked.v1","data":{"id":"y"}}`), "bad-2")
	e.publishEvent(10, "")

	reg := prometheus.NewRegistry()
	e.run(e.svc, reg)
	e.waitForIDs(ids(0, 11))
	waitCounter(t, reg, "jitid_audit_events_malformed_total", 2)
	waitCounter(t, reg, "jitid_audit_events_duplicate_total", 2)
	waitCounter(t, reg, "jitid_audit_events_stored_total", 11)
	e.verifyOK(11)
}

func TestConsumerRestartCatchesUpWithoutDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	for i := range 5 {
		e.publishEvent(i, "")
	}
	stop := e.run(e.svc, prometheus.NewRegistry())
	e.waitForIDs(ids(0, 5))
	stop()

	// Events keep flowing while audit is down, one of them a redelivery
	// of an event already recorded.
	for i := 5; i < 10; i++ {
		e.publishEvent(i, "")
	}
	e.publishEvent(2, "republished-2")

	reg := prometheus.NewRegistry()
	e.run(e.svc, reg)
	e.waitForIDs(ids(0, 10))
	waitCounter(t, reg, "jitid_audit_events_duplicate_total", 1)
	e.verifyOK(10)
}

func TestConsumerStartsBeforeNATSAndSurvivesItsRestart(t *testing.T) {
	t.Parallel()
	port := embeddednats.PortForLater(t)
	dir := t.TempDir()
	e := newEnv(t, fmt.Sprintf("nats://127.0.0.1:%d", port))
	var warned warnings
	e.log = slog.New(&warned)
	e.run(e.svc, prometheus.NewRegistry(), nats.ReconnectWait(50*time.Millisecond))
	testkit.Eventually(t, "the consumer warning that NATS is not reachable", 10*time.Second, 10*time.Millisecond, func() (int64, bool) {
		n := warned.n.Load()
		return n, n >= 1
	})

	s := embeddednats.ForTest(t, port, dir)
	for i := range 5 {
		e.publishEvent(i, "")
	}
	e.waitForIDs(ids(0, 5))

	s.Shutdown()
	s.WaitForShutdown()
	embeddednats.ForTest(t, port, dir)
	for i := 5; i < 10; i++ {
		e.publishEvent(i, "")
	}
	e.waitForIDs(ids(0, 10))
	e.verifyOK(10)
}

// failingAppender stands in for a store that is down: it fails the first
// calls, then passes through to the real log.
type failingAppender struct {
	svc   *audit.Service
	fails atomic.Int32
}

var errStoreDown = errors.New("store down")

func (f *failingAppender) Append(ctx context.Context, evs []*eventsv1.LifecycleEvent) (audit.AppendResult, error) {
	if f.fails.Add(-1) >= 0 {
		return audit.AppendResult{}, errStoreDown
	}
	return f.svc.Append(ctx, evs)
}

func TestConsumerKeepsEventsWhileStoreIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.NATSURL(t))
	for i := range 8 {
		e.publishEvent(i, "")
	}
	app := &failingAppender{svc: e.svc}
	app.fails.Store(3)
	reg := prometheus.NewRegistry()
	e.run(app, reg)
	e.waitForIDs(ids(0, 8))
	if got := counter(t, reg, "jitid_audit_store_errors_total"); got != 3 {
		t.Errorf("store errors = %v, want 3", got)
	}
	e.verifyOK(8)
}
