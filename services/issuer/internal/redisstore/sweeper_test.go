package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
)

// TestSweepMovesExpiredEventsAsProtobuf sweeps credentials whose ids hold
// the record's separators, digits and NUL: each yields its expired event
// once, as protobuf for the relay to encode, on the expired subject, and
// nothing of the credentials is left.
func TestSweepMovesExpiredEventsAsProtobuf(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	creds := []*issuer.Credential{
		credential("task-1", "agent:7:x", "user:12:y@example.com", time.Minute),
		credential("task:2:\x00", "agent-2", "user-2", time.Minute),
		credential("task-3", "agent-3", "3:", time.Minute),
	}
	want := map[string]*eventsv1.LifecycleEvent{}
	for _, c := range creds {
		expired := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)
		if err := e.store.Issue(ctx, c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c), expired); err != nil {
			t.Fatal(err)
		}
		want[c.ID] = expired
	}
	subject := e.events.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)

	if n, err := e.store.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != len(creds) {
		t.Fatalf("SweepExpired() = %d, %v; want %d", n, err, len(creds))
	}
	got := map[string]*eventsv1.LifecycleEvent{}
	for _, o := range e.outbox(t) {
		if o.ev.GetType() != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED {
			continue
		}
		id := o.ev.GetCredentialId()
		if _, dup := got[id]; dup {
			t.Errorf("%s: a second expired event", id)
		}
		got[id] = o.ev
		if o.subject != subject {
			t.Errorf("%s: subject %q, want %q", id, o.subject, subject)
		}
		if o.field != "pb" {
			t.Errorf("%s: event in field %q, want pb", id, o.field)
		}
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("expired events (-want +got):\n%s", diff)
	}
	for _, k := range e.keys(t) {
		// A task's owner outlives its credentials (DoneTTL): the task id
		// stays its platform's.
		if !strings.HasSuffix(k, ":outbox") && !strings.Contains(k, ":owner:") {
			t.Errorf("key %q left after the sweep", k)
		}
	}
	if n, err := e.store.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != 0 {
		t.Errorf("second SweepExpired() = %d, %v; want 0", n, err)
	}
}

// TestIssueRefusesAnExpiredEventTheRelayCouldNotEncode: the expired event is
// encoded only when it is due, so Issue checks now what Encode would refuse.
func TestIssueRefusesAnExpiredEventTheRelayCouldNotEncode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		modify func(*eventsv1.LifecycleEvent)
	}{
		{"no id", func(ev *eventsv1.LifecycleEvent) { ev.Id = "" }},
		{"not an expired event", func(ev *eventsv1.LifecycleEvent) { ev.Type = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED }},
		{"time out of range", func(ev *eventsv1.LifecycleEvent) { ev.Time = &timestamppb.Timestamp{Seconds: -1 << 40} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := credential(randID("task-"), "agent-1", "user-1", time.Minute)
			expired := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)
			tc.modify(expired)
			err := e.store.Issue(context.Background(), c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c), expired)
			if !errors.Is(err, eventbus.ErrMalformed) {
				t.Errorf("Issue() = %v, want ErrMalformed", err)
			}
		})
	}
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("keys written by refused issues: %v", keys)
	}
}

// TestRunSweeperSweepsABurstBackToBack: when a shard holds more due
// credentials than one script sweeps, the sweeper goes on at once instead
// of waiting for the next tick, and wakes the relay after each script.
func TestRunSweeperSweepsABurstBackToBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 5*redisstore.DefaultSweepLimit + 1 // six scripts, all in one shard
	for range n {
		e.issue(t, credential("task-burst", "agent-1", "user-1", time.Hour))
	}
	var notified atomic.Int64
	s := redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events,
		Clock:  func() time.Time { return time.Now().Add(2 * time.Hour) },
		Notify: func() { notified.Add(1) }})
	const interval = 500 * time.Millisecond
	go s.RunSweeper(ctx, interval)
	// One script per tick would take six ticks. The schedule empties in
	// the script that writes the last events: a cheap state to poll.
	expiry := e.shardKey("task-burst", "expiry")
	waitUntil(t, 3*interval-50*time.Millisecond, "the schedule to empty", func() bool {
		return e.rdb.Exists(ctx, expiry).Val() == 0
	})
	if got := len(e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)); got != n {
		t.Errorf("expired events for %d credentials, want %d", got, n)
	}
	if got := notified.Load(); got < 6 {
		t.Errorf("relay woken %d times, want at least once per script (6)", got)
	}
}

// TestSweepRemovesRecordsItCannotRead: a corrupt record must not stop the
// sweep of its shard, nor have the events before it written again at every
// sweep; it is removed, and said so.
func TestSweepRemovesRecordsItCannotRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var logged bytes.Buffer
	s := redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events,
		Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError}))})
	corrupt := []string{
		"\x00\x00\x00\x09ev-",        // cut short in the event id
		"\x00\x00\x00\x02ev\x00\x00", // cut short in a length
		"garbage",                    // a length past the end
		"",                           // empty
	}
	var good []*issuer.Credential
	for i := range len(corrupt) + 2 {
		// One task, so one shard and one script; expiries in this order.
		c := credential("task-corrupt", "agent-1", "user-1", time.Minute+time.Duration(i)*time.Second)
		e.issue(t, c)
		if i == 0 || i > len(corrupt) {
			good = append(good, c)
			continue
		}
		if err := e.rdb.HSet(ctx, e.shardKey("task-corrupt", "expired"), c.ID, corrupt[i-1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != len(corrupt)+2 {
		t.Fatalf("SweepExpired() = %d, %v; want %d", n, err, len(corrupt)+2)
	}
	if n, err := s.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != 0 {
		t.Errorf("second SweepExpired() = %d, %v; want 0", n, err)
	}
	expired := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	if len(expired) != len(good) {
		t.Errorf("expired events for %d credentials, want %d", len(expired), len(good))
	}
	for _, c := range good {
		if expired[c.ID] != 1 {
			t.Errorf("%s: %d expired events, want 1", c.ID, expired[c.ID])
		}
	}
	// Without the record the index ids are unknown: the indexes keep the
	// corrupt credentials' ids until their TTL, and List skips them.
	for _, k := range e.keys(t) {
		if strings.Contains(k, ":cred:") || strings.HasSuffix(k, ":expiry") || strings.HasSuffix(k, ":expired") {
			t.Errorf("key %q left after the sweep", k)
		}
	}
	if logged.Len() == 0 {
		t.Error("no error logged for the records that could not be read")
	}
}

// TestSweeperUsesItsOwnClient: with Options.SweepClient the sweeper's
// round trips do not go through the store's pool at all.
func TestSweeperUsesItsOwnClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := credential("task-own", "agent-1", "user-1", time.Minute)
	e.issue(t, c)
	storeClient := redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr})
	s := redisstore.New(storeClient, redisstore.Options{Prefix: e.prefix, Events: e.events, SweepClient: e.rdb})
	if err := storeClient.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != 1 {
		t.Errorf("SweepExpired() with the store's client closed = %d, %v; want 1, nil", n, err)
	}
	if got := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)[c.ID]; got != 1 {
		t.Errorf("%d expired events, want 1", got)
	}
}
