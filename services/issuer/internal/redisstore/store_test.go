package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/testing/protocmp"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/testkit/testserver"
)

func TestIssueWritesCredentialIndexesScheduleAndOneEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := credential("task-1", "agent-1", "user-1", 10*time.Minute)
	e.issue(t, c)

	credKey := e.shardKey("task-1", "cred:"+c.ID)
	at, err := e.rdb.PExpireTime(ctx, credKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Duration(c.ExpiresAt.UnixMilli()) * time.Millisecond; at != want {
		t.Errorf("credential key expires at %v, want %v (ExpiresAt)", at, want)
	}
	for _, idx := range []string{"task:task-1", "agent:agent-1", "delegator:user-1"} {
		key := e.shardKey("task-1", idx)
		if ok, err := e.rdb.SIsMember(ctx, key, c.ID).Result(); err != nil || !ok {
			t.Errorf("SISMEMBER %s = %v, %v; want true", idx, ok, err)
		}
		if ttl := e.rdb.PTTL(ctx, key).Val(); ttl <= 0 {
			t.Errorf("index %s has no TTL (%v)", idx, ttl)
		}
	}
	score, err := e.rdb.ZScore(ctx, e.shardKey("task-1", "expiry"), c.ID).Result()
	if err != nil || int64(score) != c.ExpiresAt.UnixMilli() {
		t.Errorf("expiry score = %v, %v; want %d", score, err, c.ExpiresAt.UnixMilli())
	}
	if ok, err := e.rdb.HExists(ctx, e.shardKey("task-1", "expired"), c.ID).Result(); err != nil || !ok {
		t.Errorf("expired event kept = %v, %v; want true", ok, err)
	}
	out := e.outbox(t)
	if len(out) != 1 {
		t.Fatalf("outbox holds %d events, want 1", len(out))
	}
	if got, want := out[0].ev.GetType(), eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED; got != want {
		t.Errorf("outbox event type %s, want %s", got, want)
	}
	if got, want := out[0].subject, e.events.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED); got != want {
		t.Errorf("outbox subject %q, want %q", got, want)
	}

	got, err := e.store.Get(ctx, c.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got, protocmp.Transform()); diff != "" {
		t.Errorf("Get() (-want +got):\n%s", diff)
	}
	if _, err := e.store.Get(ctx, c.ID, "task-1"); err != nil {
		t.Errorf("Get(id, task) = %v", err)
	}
	if _, err := e.store.Get(ctx, c.ID, "other-task"); !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("Get(id, wrong task) = %v, want ErrNotFound", err)
	}
	if err := e.store.Issue(ctx, c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c),
		event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)); !errors.Is(err, redisstore.ErrIDInUse) {
		t.Errorf("Issue(same id) = %v, want ErrIDInUse", err)
	}
	if n := len(e.outbox(t)); n != 1 {
		t.Errorf("outbox holds %d events after a refused issue, want 1", n)
	}
}

func TestKeysOfOneTaskShareASlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := credential("task-slot", "agent-slot", "user-slot", time.Minute)
	e.issue(t, c)
	keys := e.keys(t) // credential, three indexes, schedule, expired events, outbox, task owner
	if len(keys) != 8 {
		t.Errorf("Issue wrote %d keys, want 8: %v", len(keys), keys)
	}
	if _, err := e.store.CompleteTask(context.Background(), "task-slot", testOwner, false, revokedEvent,
		&eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED}); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, e.keys(t)...) // the done marker and the outbox
	want := keySlot(e.shardKey("task-slot", "cred:"+c.ID))
	for _, k := range keys {
		if !strings.HasPrefix(k, e.prefix+":{") {
			t.Errorf("key %q has no hash tag", k)
		}
		if got := keySlot(k); got != want {
			t.Errorf("key %q in slot %d, want %d", k, got, want)
		}
	}
}

// keySlot is Redis Cluster's HASH_SLOT: CRC16/XMODEM of the hash tag (or of
// the key when it has none) mod 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func TestKeySlotMatchesRedis(t *testing.T) {
	t.Parallel()
	// Known values from the Redis Cluster specification.
	for key, want := range map[string]uint16{"123456789": 12739 % 16384, "foo": 12182, "{user1000}.following": 3443} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestIssueAfterCompleteTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c1 := credential("task-done", "agent-1", "user-1", time.Minute)
	c2 := credential("task-done", "agent-2", "user-1", time.Minute)
	e.issue(t, c1)
	e.issue(t, c2)
	completed := &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED, Reason: "done"}
	ids, err := e.store.CompleteTask(ctx, "task-done", testOwner, false, revokedEvent, completed)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	want := []string{c1.ID, c2.ID}
	slices.Sort(want)
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("CompleteTask() ids (-want +got):\n%s", diff)
	}
	c3 := credential("task-done", "agent-1", "user-1", time.Minute)
	err = e.store.Issue(ctx, c3, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c3), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c3))
	if !errors.Is(err, issuer.ErrTaskCompleted) {
		t.Fatalf("Issue after CompleteTask = %v, want ErrTaskCompleted", err)
	}
	if _, err := e.store.Get(ctx, c3.ID, ""); !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("Get(refused credential) = %v, want ErrNotFound", err)
	}
	var completedEvents []*eventsv1.LifecycleEvent
	revoked := 0
	for _, o := range e.outbox(t) {
		switch o.ev.GetType() {
		case eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED:
			completedEvents = append(completedEvents, o.ev)
		case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED:
			revoked++
		case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED:
			if o.ev.GetCredentialId() == c3.ID {
				t.Errorf("issued event written for a refused credential")
			}
		}
	}
	if revoked != 2 || len(completedEvents) != 1 {
		t.Fatalf("outbox: %d revoked, %d completed events; want 2 and 1", revoked, len(completedEvents))
	}
	got := slices.Clone(completedEvents[0].GetCredentialIds())
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("completed event credential ids (-want +got):\n%s", diff)
	}
	if len(completed.GetCredentialIds()) != 0 {
		t.Errorf("CompleteTask modified the caller's event")
	}
	// Completing again revokes nothing and records nothing new.
	ids, err = e.store.CompleteTask(ctx, "task-done", testOwner, false, revokedEvent,
		&eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED})
	if err != nil || len(ids) != 0 {
		t.Errorf("second CompleteTask = %v, %v; want none, nil", ids, err)
	}
	if n := len(e.outbox(t)); n != 5 {
		t.Errorf("outbox holds %d events, want 5 (2 issued, 2 revoked, 1 completed)", n)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	// Three credentials: a and b share task-a; c is another task (likely
	// another shard) of the same agent and delegator as a.
	tests := []struct {
		name string
		sel  func(a, b, c *issuer.Credential) issuer.Selector
		want func(a, b, c *issuer.Credential) []*issuer.Credential
	}{
		{
			name: "by credential",
			sel: func(a, _, _ *issuer.Credential) issuer.Selector {
				return issuer.Selector{Kind: issuer.ByCredential, ID: a.ID}
			},
			want: func(a, _, _ *issuer.Credential) []*issuer.Credential { return []*issuer.Credential{a} },
		},
		{
			name: "by task",
			sel: func(a, _, _ *issuer.Credential) issuer.Selector {
				return issuer.Selector{Kind: issuer.ByTask, ID: a.Task.GetId()}
			},
			want: func(a, b, _ *issuer.Credential) []*issuer.Credential { return []*issuer.Credential{a, b} },
		},
		{
			name: "by agent",
			sel: func(a, _, _ *issuer.Credential) issuer.Selector {
				return issuer.Selector{Kind: issuer.ByAgent, ID: a.Agent.GetId()}
			},
			want: func(a, _, c *issuer.Credential) []*issuer.Credential { return []*issuer.Credential{a, c} },
		},
		{
			name: "by delegator",
			sel: func(a, _, _ *issuer.Credential) issuer.Selector {
				return issuer.Selector{Kind: issuer.ByDelegator, ID: a.Delegator.GetId()}
			},
			want: func(a, _, c *issuer.Credential) []*issuer.Credential { return []*issuer.Credential{a, c} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			a := credential("task-a", "agent-1", "user-1", time.Minute)
			b := credential("task-a", "agent-2", "user-2", time.Minute)
			// Pick a task in another shard, so the agent and delegator
			// indexes are walked across shards.
			taskC := "task-c"
			for i := 0; e.store.ShardOf(taskC) == e.store.ShardOf("task-a"); i++ {
				taskC = "task-c" + strings.Repeat("x", i)
			}
			c := credential(taskC, "agent-1", "user-1", time.Minute)
			for _, cr := range []*issuer.Credential{a, b, c} {
				e.issue(t, cr)
			}
			want := tt.want(a, b, c)
			ids, err := e.store.Revoke(ctx, tt.sel(a, b, c), revokedEvent)
			if err != nil {
				t.Fatal(err)
			}
			var wantIDs []string
			for _, w := range want {
				wantIDs = append(wantIDs, w.ID)
			}
			slices.Sort(wantIDs)
			slices.Sort(ids)
			if diff := cmp.Diff(wantIDs, ids); diff != "" {
				t.Errorf("Revoke() ids (-want +got):\n%s", diff)
			}
			for _, w := range want {
				task := w.Task.GetId()
				if _, err := e.store.Get(ctx, w.ID, ""); !errors.Is(err, issuer.ErrNotFound) {
					t.Errorf("Get(revoked %s) = %v, want ErrNotFound", w.ID, err)
				}
				for _, idx := range []string{"task:" + task, "agent:" + w.Agent.GetId(), "delegator:" + w.Delegator.GetId()} {
					if e.rdb.SIsMember(ctx, e.shardKey(task, idx), w.ID).Val() {
						t.Errorf("%s still lists revoked %s", idx, w.ID)
					}
				}
				if err := e.rdb.ZScore(ctx, e.shardKey(task, "expiry"), w.ID).Err(); !errors.Is(err, redis.Nil) {
					t.Errorf("expiry schedule still holds %s (%v)", w.ID, err)
				}
				if e.rdb.HExists(ctx, e.shardKey(task, "expired"), w.ID).Val() {
					t.Errorf("expired event of %s still kept", w.ID)
				}
			}
			revoked := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
			for _, w := range want {
				if revoked[w.ID] != 1 {
					t.Errorf("%d revoked events for %s, want 1", revoked[w.ID], w.ID)
				}
			}
			if len(revoked) != len(want) {
				t.Errorf("revoked events for %d credentials, want %d", len(revoked), len(want))
			}
			// Nothing left to revoke: no ids, no events.
			ids, err = e.store.Revoke(ctx, tt.sel(a, b, c), revokedEvent)
			if err != nil || len(ids) != 0 {
				t.Errorf("second Revoke() = %v, %v; want none", ids, err)
			}
			if n := len(e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)); n != len(want) {
				t.Errorf("second Revoke wrote events: %d credentials revoked in outbox, want %d", n, len(want))
			}
		})
	}
}

func TestRevokeRacingSweepYieldsOneEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 50
	creds := make([]*issuer.Credential, n)
	for i := range creds {
		creds[i] = credential(randID("task-"), "agent-race", "user-race", time.Minute)
		e.issue(t, creds[i])
	}
	sweeper := e.newStore()
	// The sweeper is told it is past every expiry while the keys still live,
	// so revoke and sweep both find the credentials and race for each.
	future := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	// The revoker walks from the last expiry back, the sweeper from the
	// first on: they meet, and race, in the middle.
	wg.Go(func() {
		for _, c := range slices.Backward(creds) {
			if _, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByTask, ID: c.Task.GetId()}, revokedEvent); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range n {
			if _, err := sweeper.SweepExpired(ctx, future, 1); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range n {
			if _, err := e.newStore().SweepExpired(ctx, future, 1); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if _, err := sweeper.SweepExpired(ctx, future, 0); err != nil {
		t.Fatal(err)
	}
	revoked := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
	expired := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	for _, c := range creds {
		if got := revoked[c.ID] + expired[c.ID]; got != 1 {
			t.Errorf("%s: %d revoked and %d expired events, want exactly one in all", c.ID, revoked[c.ID], expired[c.ID])
		}
	}
	t.Logf("revoked %d, expired %d", len(revoked), len(expired))
	if keys := e.keys(t); len(slices.DeleteFunc(keys, func(k string) bool {
		return strings.HasSuffix(k, ":outbox") || strings.Contains(k, ":owner:")
	})) != 0 {
		t.Errorf("keys left besides outboxes: %v", keys)
	}
}

func TestSweepByTwoReplicasEmitsOneExpiredEventEach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 300
	creds := make([]*issuer.Credential, n)
	for i := range creds {
		creds[i] = credential(randID("task-"), "agent-x", "user-x", time.Minute)
		e.issue(t, creds[i])
	}
	replicas := []*redisstore.Store{e.store, e.newStore()}
	future := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	swept := make([]int, len(replicas))
	for i, r := range replicas {
		wg.Go(func() {
			for {
				k, err := r.SweepExpired(ctx, future, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if k == 0 {
					return
				}
				swept[i] += k
			}
		})
	}
	wg.Wait()
	if swept[0]+swept[1] != n {
		t.Errorf("replicas swept %v credentials, want %d in all", swept, n)
	}
	expired := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	for _, c := range creds {
		if expired[c.ID] != 1 {
			t.Errorf("%s: %d expired events, want 1", c.ID, expired[c.ID])
		}
	}
	page, err := e.store.List(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "agent-x"}, 0, "")
	if err != nil || len(page.Credentials) != 0 {
		t.Errorf("List after sweep = %d credentials, %v; want none", len(page.Credentials), err)
	}
}

func TestRunSweeperEmitsExpiredWithinTwoSeconds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notified := make(chan struct{}, 1)
	s := redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events, Notify: func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	}})
	e.store = s
	c := credential("task-exp", "agent-1", "user-1", 300*time.Millisecond)
	e.issue(t, c)
	<-notified
	go s.RunSweeper(ctx, 500*time.Millisecond)
	waitUntil(t, time.Until(c.ExpiresAt.Add(2*time.Second)), "the expired event, 2s after expiry", func() bool {
		return e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)[c.ID] == 1
	})
	t.Logf("expired event %v after expiry", time.Since(c.ExpiresAt).Round(time.Millisecond))
	if _, err := s.Get(ctx, c.ID, ""); !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("Get(expired) = %v, want ErrNotFound", err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var live []*issuer.Credential
	for i := range 9 {
		c := credential(randID("task-"), "agent-list", "user-list", time.Minute)
		e.issue(t, c)
		if i%4 == 0 {
			if _, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByCredential, ID: c.ID}, revokedEvent); err != nil {
				t.Fatal(err)
			}
			continue
		}
		live = append(live, c)
	}
	sameTask := credential("task-list", "agent-list", "user-other", time.Minute)
	sameTask2 := credential("task-list", "agent-other", "user-other", time.Minute)
	e.issue(t, sameTask)
	e.issue(t, sameTask2)
	live = append(live, sameTask)

	ids := func(cs []*issuer.Credential) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name string
		sel  issuer.Selector
		want []string
	}{
		{"by agent", issuer.Selector{Kind: issuer.ByAgent, ID: "agent-list"}, ids(live)},
		{"by delegator", issuer.Selector{Kind: issuer.ByDelegator, ID: "user-other"}, ids([]*issuer.Credential{sameTask, sameTask2})},
		{"by task", issuer.Selector{Kind: issuer.ByTask, ID: "task-list"}, ids([]*issuer.Credential{sameTask, sameTask2})},
		{"unknown", issuer.Selector{Kind: issuer.ByAgent, ID: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, size := range []int{1, 2, 3, 100} {
				var got []*issuer.Credential
				token := ""
				pages := 0
				for {
					page, err := e.store.List(ctx, tt.sel, size, token)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Credentials) > size {
						t.Errorf("page of %d credentials, size %d", len(page.Credentials), size)
					}
					got = append(got, page.Credentials...)
					pages++
					if page.NextToken == "" {
						break
					}
					if pages > 20 {
						t.Fatal("listing does not end")
					}
					token = page.NextToken
				}
				gotIDs := ids(got)
				if diff := cmp.Diff(tt.want, gotIDs); diff != "" {
					t.Errorf("page size %d: List() ids (-want +got):\n%s", size, diff)
				}
				if len(gotIDs) != len(got) {
					t.Errorf("page size %d: a credential listed twice", size)
				}
			}
		})
	}

	page, err := e.store.List(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "agent-list"}, 2, "")
	if err != nil || page.NextToken == "" {
		t.Fatalf("List() = %v, %v; want a next page", page, err)
	}
	for name, tc := range map[string]struct {
		sel   issuer.Selector
		token string
	}{
		"garbage":         {issuer.Selector{Kind: issuer.ByAgent, ID: "agent-list"}, "!!not base64"},
		"other selector":  {issuer.Selector{Kind: issuer.ByAgent, ID: "agent-other"}, page.NextToken},
		"truncated token": {issuer.Selector{Kind: issuer.ByAgent, ID: "agent-list"}, page.NextToken[:6]},
	} {
		if _, err := e.store.List(ctx, tc.sel, 2, tc.token); !errors.Is(err, issuer.ErrBadPageToken) {
			t.Errorf("%s: List() = %v, want ErrBadPageToken", name, err)
		}
	}
}

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED, Reason: "no"}
	if err := e.store.AppendEvent(context.Background(), "task-denied", ev); err != nil {
		t.Fatal(err)
	}
	out := e.outbox(t)
	if len(out) != 1 || out[0].ev.GetId() != ev.GetId() {
		t.Fatalf("outbox = %v, want the denied event", out)
	}
	if got := e.rdb.XLen(context.Background(), e.shardKey("task-denied", "outbox")).Val(); got != 1 {
		t.Errorf("outbox of the task's shard holds %d, want 1", got)
	}
}

func TestRedisDownIsStoreUnavailable(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.ClosedAddr(t), MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	s := redisstore.New(rdb, redisstore.Options{Prefix: "down"})
	ctx := context.Background()
	c := credential("task-1", "agent-1", "user-1", time.Minute)
	checks := map[string]error{}
	checks["Issue"] = s.Issue(ctx, c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c))
	_, checks["Get"] = s.Get(ctx, c.ID, "")
	_, checks["List"] = s.List(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "a"}, 10, "")
	_, checks["Revoke"] = s.Revoke(ctx, issuer.Selector{Kind: issuer.ByTask, ID: "task-1"}, revokedEvent)
	_, checks["CompleteTask"] = s.CompleteTask(ctx, "task-1", testOwner, false, revokedEvent, &eventsv1.LifecycleEvent{Id: "x", Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED})
	_, checks["SweepExpired"] = s.SweepExpired(ctx, time.Now(), 10)
	checks["AppendEvent"] = s.AppendEvent(ctx, "task-1", event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED, c))
	for name, err := range checks {
		if !errors.Is(err, issuer.ErrStoreUnavailable) {
			t.Errorf("%s with Redis down = %v, want ErrStoreUnavailable", name, err)
		}
	}
}

// TestSweepBetweenRevokeReadAndWrite places the sweep exactly in the window
// between Revoke's read of a credential and its script: mkEvent runs there.
func TestSweepBetweenRevokeReadAndWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := credential("task-window", "agent-1", "user-1", time.Minute)
	e.issue(t, c)
	sweeper := e.newStore()
	ids, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByCredential, ID: c.ID}, func(c *issuer.Credential) *eventsv1.LifecycleEvent {
		if n, err := sweeper.SweepExpired(ctx, time.Now().Add(time.Hour), 0); err != nil || n != 1 {
			t.Errorf("SweepExpired() = %d, %v; want 1", n, err)
		}
		return revokedEvent(c)
	})
	if err != nil || len(ids) != 0 {
		t.Errorf("Revoke() = %v, %v; want nothing revoked (the sweeper won)", ids, err)
	}
	if got := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)[c.ID]; got != 0 {
		t.Errorf("%d revoked events, want 0", got)
	}
	if got := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)[c.ID]; got != 1 {
		t.Errorf("%d expired events, want 1", got)
	}
}

// TestCompleteTaskRereadsWhenIssuedMeanwhile issues a credential of the task
// between CompleteTask's read and its script: the script must not mark the
// task completed with that credential left live.
func TestCompleteTaskRereadsWhenIssuedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	first := credential("task-late", "agent-1", "user-1", time.Minute)
	e.issue(t, first)
	var late *issuer.Credential
	ids, err := e.store.CompleteTask(ctx, "task-late", testOwner, false, func(c *issuer.Credential) *eventsv1.LifecycleEvent {
		if late == nil {
			late = credential("task-late", "agent-2", "user-1", time.Minute)
			e.issue(t, late)
		}
		return revokedEvent(c)
	}, &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	want := []string{first.ID, late.ID}
	slices.Sort(want)
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("CompleteTask() ids (-want +got):\n%s", diff)
	}
	if _, err := e.store.Get(ctx, late.ID, ""); !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("credential issued during CompleteTask still live: %v", err)
	}
	for _, o := range e.outbox(t) {
		if o.ev.GetType() == eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED {
			got := slices.Sorted(slices.Values(o.ev.GetCredentialIds()))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("completed event ids (-want +got):\n%s", diff)
			}
		}
	}
	if n := len(e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)); n != 2 {
		t.Errorf("revoked events for %d credentials, want 2", n)
	}
}

// The issuer's store interface is unexported; handing a *Store to
// issuer.New checks at compile time that it implements it.
var _ = func() { _, _ = issuer.New(issuer.Config{}, nil, (*redisstore.Store)(nil), nil) }

func TestWatchHealth(t *testing.T) {
	t.Parallel()
	r := testserver.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	st := redisstore.New(rdb, redisstore.Options{Prefix: testserver.Namespace(t)})
	reports := make(chan bool, 16)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go st.WatchHealth(ctx, 50*time.Millisecond, func(up bool) { reports <- up })
	wait := func(want bool) {
		t.Helper()
		select {
		case got := <-reports:
			if got != want {
				t.Fatalf("health report %v, want %v", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no health report %v", want)
		}
	}
	wait(true)
	r.Stop()
	wait(false)
}
