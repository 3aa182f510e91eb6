package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
)

// exchange issues a sub-agent's credential from parent (same task and
// delegator, another agent), as Issuer.Exchange does.
func (e *env) exchange(parent *issuer.Credential, agentID string) (*issuer.Credential, error) {
	c := credential(parent.Task.GetId(), agentID, parent.Delegator.GetId(), time.Minute)
	c.ParentID = parent.ID
	c.Chain = []issuer.ChainLink{{Agent: parent.Agent, Scopes: parent.Scopes}}
	err := e.store.Issue(context.Background(), c,
		event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED, c),
		event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c))
	return c, err
}

// otherShardTask returns a task id whose shard differs from taskID's.
func (e *env) otherShardTask(taskID string) string {
	for i := 0; ; i++ {
		other := taskID + "-" + strconv.Itoa(i)
		if e.store.ShardOf(other) != e.store.ShardOf(taskID) {
			return other
		}
	}
}

// live reports whether Get finds c, by its task and in every shard, and
// fails the test when the two answers differ.
func (e *env) live(t *testing.T, c *issuer.Credential) bool {
	t.Helper()
	ctx := context.Background()
	_, err1 := e.store.Get(ctx, c.ID, c.Task.GetId())
	_, err2 := e.store.Get(ctx, c.ID, "")
	for _, err := range []error{err1, err2} {
		if err != nil && !errors.Is(err, issuer.ErrNotFound) {
			t.Fatalf("Get(%s) = %v", c.ID, err)
		}
	}
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("Get(%s) by task = %v, in every shard = %v", c.ID, err1, err2)
	}
	return err1 == nil
}

// listed returns the ids List finds for sel, every page.
func (e *env) listed(t *testing.T, sel issuer.Selector) []string {
	t.Helper()
	var ids []string
	token := ""
	for {
		page, err := e.store.List(context.Background(), sel, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Credentials {
			ids = append(ids, c.ID)
		}
		if token = page.NextToken; token == "" {
			slices.Sort(ids)
			return ids
		}
	}
}

func idsOf(cs ...*issuer.Credential) []string {
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestMarkMakesCredentialsInactiveAtOnce writes the marks of a revocation
// and nothing else: every credential of the agent (delegator) written
// before is inactive for every liveness check, before any is deleted; one
// written after is live; Revoke, which reads past the marks, then revokes
// them all with one event each.
func TestMarkMakesCredentialsInactiveAtOnce(t *testing.T) {
	t.Parallel()
	for _, kind := range []issuer.SelectorKind{issuer.ByAgent, issuer.ByDelegator} {
		t.Run(map[issuer.SelectorKind]string{issuer.ByAgent: "by agent", issuer.ByDelegator: "by delegator"}[kind], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			a := credential("task-a", "agent-1", "user-1", time.Minute)
			c := credential(e.otherShardTask("task-a"), "agent-1", "user-1", time.Minute)
			used := credential("task-a", "agent-1", "user-1", time.Minute)
			used.MaxUses = 3
			bystander := credential("task-a", "agent-2", "user-2", time.Minute)
			for _, cr := range []*issuer.Credential{a, c, used, bystander} {
				e.issue(t, cr)
			}
			sel := issuer.Selector{Kind: kind, ID: "agent-1"}
			if kind == issuer.ByDelegator {
				sel.ID = "user-1"
			}
			if err := e.store.MarkRevoked(ctx, sel); err != nil {
				t.Fatal(err)
			}

			for _, cr := range []*issuer.Credential{a, c, used} {
				if e.live(t, cr) {
					t.Errorf("Get(%s) finds a credential the mark covers", cr.ID)
				}
				if e.rdb.Exists(ctx, e.shardKey(cr.Task.GetId(), "cred:"+cr.ID)).Val() != 1 {
					t.Errorf("the mark deleted %s; deleting is the revocation's, with the event", cr.ID)
				}
			}
			if _, err := e.store.Use(ctx, used.ID, used.Task.GetId(), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED, used)); !errors.Is(err, issuer.ErrNotFound) {
				t.Errorf("Use(covered) = %v, want ErrNotFound", err)
			}
			if n := e.rdb.HGet(ctx, e.shardKey("task-a", "cred:"+used.ID), "uses").Val(); n != "" {
				t.Errorf("Use of a covered credential counted a use (%s)", n)
			}
			if got := e.listed(t, sel); len(got) != 0 {
				t.Errorf("List(%v) = %v, want none", sel, got)
			}
			if diff := cmp.Diff(idsOf(bystander), e.listed(t, issuer.Selector{Kind: issuer.ByTask, ID: "task-a"})); diff != "" {
				t.Errorf("List(task-a) (-want +got):\n%s", diff)
			}
			if _, err := e.exchange(a, "sub-agent"); !errors.Is(err, issuer.ErrNotFound) {
				t.Errorf("exchange from a covered parent = %v, want ErrNotFound", err)
			}
			if !e.live(t, bystander) {
				t.Errorf("the mark hid a credential of another agent and delegator")
			}

			// Issued after the mark: live, usable and exchangeable.
			after := credential("task-a", "agent-1", "user-1", time.Minute)
			after.MaxUses = 3
			e.issue(t, after)
			if !e.live(t, after) {
				t.Errorf("a credential issued after the mark is not live")
			}
			if _, err := e.store.Use(ctx, after.ID, "task-a", event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED, after)); err != nil {
				t.Errorf("Use(issued after the mark) = %v", err)
			}
			if diff := cmp.Diff(idsOf(after), e.listed(t, sel)); diff != "" {
				t.Errorf("List(%v) after a new issue (-want +got):\n%s", sel, diff)
			}
			plain := credential("task-a", "agent-1", "user-1", time.Minute)
			e.issue(t, plain)
			child, err := e.exchange(plain, "sub-agent")
			if err != nil {
				t.Errorf("exchange from a credential issued after the mark = %v", err)
			}

			// The revocation itself finds the hidden credentials.
			ids, err := e.store.Revoke(ctx, sel, revokedEvent)
			if err != nil {
				t.Fatal(err)
			}
			want := idsOf(a, c, used, after, plain, child)
			slices.Sort(ids)
			if diff := cmp.Diff(want, ids); diff != "" {
				t.Errorf("Revoke() ids (-want +got):\n%s", diff)
			}
			revoked := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
			for _, id := range want {
				if revoked[id] != 1 {
					t.Errorf("%d revoked events for %s, want 1", revoked[id], id)
				}
			}
			if len(revoked) != len(want) {
				t.Errorf("revoked events for %d credentials, want %d", len(revoked), len(want))
			}
			if exchanged := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED); len(exchanged) != 1 || exchanged[child.ID] != 1 {
				t.Errorf("exchanged events %v, want one, for %s (the refused exchange wrote none)", exchanged, child.ID)
			}
		})
	}
}

// TestMarksArePrunedAndExpire: a mark lives MarkRetention; older ones are
// dropped when a mark is written, the set expires with its latest mark,
// a later mark never lowers an earlier one, and a shard whose index lists
// none of the credentials gets no mark.
func TestMarksArePrunedAndExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const retention = 3 * time.Second
	s := redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events, MarkRetention: retention})
	e.store = s
	for _, u := range []string{"user-a", "user-b", "user-c", "user-future"} {
		e.issue(t, credential("task-m", "agent-"+u, u, time.Minute))
	}
	marks := e.shardKey("task-m", "revoked")
	mark := func(user string) {
		t.Helper()
		if err := s.MarkRevoked(ctx, issuer.Selector{Kind: issuer.ByDelegator, ID: user}); err != nil {
			t.Fatal(err)
		}
		if ttl := e.rdb.PTTL(ctx, marks).Val(); ttl <= 0 || ttl > retention {
			t.Errorf("marks expire in %v, want within %v", ttl, retention)
		}
	}
	members := func() []string {
		t.Helper()
		m, err := e.rdb.ZRange(ctx, marks, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(m)
		return m
	}

	// A mark far ahead (a Redis clock that was ahead, then stepped back):
	// the next one must not lower it.
	future := float64(time.Now().Add(time.Hour).UnixMicro())
	e.rdb.ZAdd(ctx, marks, redis.Z{Score: future, Member: "delegator:user-future"})
	mark("user-future")
	if got := e.rdb.ZScore(ctx, marks, "delegator:user-future").Val(); got != future {
		t.Errorf("mark of user-future = %v, want %v kept", got, future)
	}

	// Marks written before, by Redis's clock: user-a's past the retention,
	// user-b's within it.
	now, err := e.rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	e.rdb.ZAdd(ctx, marks,
		redis.Z{Score: float64(now.Add(-retention - time.Second).UnixMicro()), Member: "delegator:user-a"},
		redis.Z{Score: float64(now.Add(-time.Second).UnixMicro()), Member: "delegator:user-b"})
	mark("user-c")
	if diff := cmp.Diff([]string{"delegator:user-b", "delegator:user-c", "delegator:user-future"}, members()); diff != "" {
		t.Errorf("marks after pruning (-want +got):\n%s", diff)
	}
	// Only the shard of task-m has credentials of these delegators.
	for i := range redisstore.DefaultShards {
		k := e.prefix + ":{" + strconv.Itoa(i) + "}:revoked"
		if k != marks && e.rdb.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s written for a shard without credentials of the delegator", k)
		}
	}
	// mark checked that the set expires within the retention.
	waitUntil(t, retention+5*time.Second, "the marks to expire", func() bool {
		return e.rdb.Exists(ctx, marks).Val() == 0
	})
}

// TestExchangeRacingAMark: an exchange reads its parent, then writes the
// child in the issue script. A mark written between the two makes the
// script refuse; a child written before the mark is revoked with its
// parent: by the delegator's mark at once (same delegator), by the agent's
// revocation in the parent's script (the child is another agent's).
func TestExchangeRacingAMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	// The mark lands between the exchange's read of its parent and the
	// issue script.
	parent := credential("task-x", "agent-1", "user-1", time.Minute)
	e.issue(t, parent)
	if !e.live(t, parent) {
		t.Fatal("parent not live")
	}
	if err := e.store.MarkRevoked(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "agent-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.exchange(parent, "sub-1"); !errors.Is(err, issuer.ErrNotFound) {
		t.Errorf("exchange after the mark = %v, want ErrNotFound", err)
	}

	// The child is written before the mark.
	parent2 := credential("task-y", "agent-2", "user-2", time.Minute)
	e.issue(t, parent2)
	child, err := e.exchange(parent2, "sub-2")
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := e.exchange(child, "sub-sub-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.MarkRevoked(ctx, issuer.Selector{Kind: issuer.ByDelegator, ID: "user-2"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*issuer.Credential{parent2, child, grandchild} {
		if e.live(t, c) {
			t.Errorf("%s (%s) live after its delegator's mark", c.ID, c.Agent.GetId())
		}
	}

	parent3 := credential("task-z", "agent-3", "user-3", time.Minute)
	e.issue(t, parent3)
	child3, err := e.exchange(parent3, "sub-3")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: "agent-3"}, revokedEvent)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if diff := cmp.Diff(idsOf(parent3, child3), ids); diff != "" {
		t.Errorf("Revoke(agent-3) ids (-want +got):\n%s", diff)
	}
	if e.live(t, child3) {
		t.Errorf("the child of a revoked agent's credential is live")
	}
}

// TestMarkIgnoresTheIssuersClocks: marks compare Redis's times, not
// IssuedAt, so a replica whose clock is ahead cannot issue a credential
// that escapes a later mark, and one whose clock is behind cannot issue one
// that a mark before it hides; the revocation catches the first anyway.
func TestMarkIgnoresTheIssuersClocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ahead := credential("task-skew", "agent-1", "user-1", time.Minute)
	ahead.IssuedAt = ahead.IssuedAt.Add(10 * time.Minute)
	ahead.ExpiresAt = ahead.ExpiresAt.Add(10 * time.Minute)
	e.issue(t, ahead)
	sel := issuer.Selector{Kind: issuer.ByDelegator, ID: "user-1"}
	if err := e.store.MarkRevoked(ctx, sel); err != nil {
		t.Fatal(err)
	}
	behind := credential("task-skew", "agent-1", "user-1", time.Minute)
	behind.IssuedAt = behind.IssuedAt.Add(-10 * time.Minute)
	e.issue(t, behind)
	if e.live(t, ahead) {
		t.Errorf("a credential written before the mark, its IssuedAt after, is live")
	}
	if !e.live(t, behind) {
		t.Errorf("a credential written after the mark, its IssuedAt before, is hidden")
	}
	// Within the same second too: IssuedAt is truncated to the second.
	sameSecond := credential("task-skew", "agent-1", "user-1", time.Minute)
	sameSecond.IssuedAt = time.Now().Truncate(time.Second)
	if err := e.store.MarkRevoked(ctx, sel); err != nil {
		t.Fatal(err)
	}
	e.issue(t, sameSecond)
	if !e.live(t, sameSecond) {
		t.Errorf("a credential issued just after the mark, in its second, is hidden")
	}
}

// TestRevokeCutShortLeavesCredentialsInactiveAndIsCompletedLater: a
// revocation that fails after its marks leaves every credential inactive;
// the next revocation that names them (the same call again, or completing
// a task) writes the events still missing, one per credential.
func TestRevokeCutShortLeavesCredentialsInactiveAndIsCompletedLater(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var creds []*issuer.Credential
	for i := range 600 {
		c := credential("task-cut-"+strconv.Itoa(i%3), "agent-"+strconv.Itoa(i%7), "user-cut", time.Minute)
		e.issue(t, c)
		creds = append(creds, c)
	}
	sel := issuer.Selector{Kind: issuer.ByDelegator, ID: "user-cut"}
	var built atomic.Int64
	failing := func(c *issuer.Credential) *eventsv1.LifecycleEvent {
		if built.Add(1) > 300 {
			return nil // the store refuses: no event, no revocation
		}
		return revokedEvent(c)
	}
	first, err := e.store.Revoke(ctx, sel, failing)
	if err == nil {
		t.Fatal("Revoke() with a failing event builder succeeded")
	}
	if len(first) >= len(creds) {
		t.Fatalf("Revoke() cut short revoked %d of %d", len(first), len(creds))
	}
	for _, c := range creds {
		if e.live(t, c) {
			t.Fatalf("%s live after a revocation cut short", c.ID)
		}
	}
	if got := e.listed(t, sel); len(got) != 0 {
		t.Errorf("List() after a revocation cut short = %d credentials", len(got))
	}
	// A task's completion revokes what is left of its credentials ...
	done, err := e.store.CompleteTask(ctx, "task-cut-0", testOwner, false, revokedEvent,
		&eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED})
	if err != nil {
		t.Fatal(err)
	}
	// ... and the same revocation again, the rest.
	second, err := e.store.Revoke(ctx, sel, revokedEvent)
	if err != nil {
		t.Fatal(err)
	}
	all := slices.Concat(first, done, second)
	slices.Sort(all)
	if diff := cmp.Diff(idsOf(creds...), all); diff != "" {
		t.Errorf("ids revoked over the three calls (-want +got):\n%s", diff)
	}
	revoked := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
	for _, c := range creds {
		if revoked[c.ID] != 1 {
			t.Errorf("%s: %d revoked events, want 1", c.ID, revoked[c.ID])
		}
	}
}

// TestRevokeByDelegatorAcrossShardsOneEventEach revokes a delegator's
// credentials in every shard, more than a run each, some with exchanged
// descendants, while another replica revokes some of the same credentials
// by agent and a third sweeps as if they had expired: every credential ends
// with exactly one event, and nothing of them is left.
func TestRevokeByDelegatorAcrossShardsOneEventEach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 1500
	var creds []*issuer.Credential
	for i := range n {
		// 40 tasks: every shard, about 600 credentials (more than
		// revokeChunk) in some.
		c := credential("task-many-"+strconv.Itoa(i%40), "agent-"+strconv.Itoa(i%9), "user-many", time.Minute)
		e.issue(t, c)
		creds = append(creds, c)
		if i%50 == 0 {
			child, err := e.exchange(c, "sub-"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			grandchild, err := e.exchange(child, "subsub-"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			creds = append(creds, child, grandchild)
		}
	}
	other := credential("task-many-0", "agent-0", "user-other", time.Minute)
	e.issue(t, other)

	var (
		wg                   sync.WaitGroup
		byDelegator, byAgent []string
		sweptN               int
	)
	wg.Go(func() {
		ids, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByDelegator, ID: "user-many"}, revokedEvent)
		if err != nil {
			t.Error(err)
		}
		byDelegator = ids
	})
	wg.Go(func() {
		replica := e.newStore()
		for _, agent := range []string{"agent-3", "agent-5"} {
			ids, err := replica.Revoke(ctx, issuer.Selector{Kind: issuer.ByAgent, ID: agent}, revokedEvent)
			if err != nil {
				t.Error(err)
			}
			byAgent = append(byAgent, ids...)
		}
	})
	wg.Go(func() {
		sweeper := e.newStore()
		for range 4 {
			k, err := sweeper.SweepExpired(ctx, time.Now().Add(time.Hour), 5)
			if err != nil {
				t.Error(err)
			}
			sweptN += k
		}
	})
	wg.Wait()
	t.Logf("revoked by delegator %d, by agent %d, swept %d", len(byDelegator), len(byAgent), sweptN)

	all := slices.Concat(byDelegator, byAgent)
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("a credential was revoked twice")
	}
	revoked := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
	expired := e.countEvents(t, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	for _, c := range creds {
		if got := revoked[c.ID] + expired[c.ID]; got != 1 {
			t.Errorf("%s: %d revoked and %d expired events, want exactly one in all", c.ID, revoked[c.ID], expired[c.ID])
		}
	}
	if len(all) != len(revoked) || len(all)+sweptN < len(creds) {
		t.Errorf("%d ids returned, %d credentials with a revoked event, %d swept; %d credentials", len(all), len(revoked), sweptN, len(creds))
	}
	// The sweep ran as if an hour had passed, so it may have swept the
	// bystander's credential too; only a revoked event would be wrong.
	if revoked[other.ID] != 0 {
		t.Errorf("another delegator's credential was revoked")
	}
	for _, k := range e.keys(t) {
		if strings.Contains(k, ":cred:") && !strings.HasSuffix(k, other.ID) {
			t.Errorf("key %s left", k)
		}
	}
	for _, id := range all {
		// The sweeper leaves a children set to its own expiry; a
		// revocation deletes it.
		if n := len(e.rdb.Keys(ctx, e.prefix+":*:children:"+id).Val()); n != 0 {
			t.Errorf("children set of revoked %s left", id)
		}
	}
	for _, c := range creds {
		for _, idx := range []string{"task:" + c.Task.GetId(), "agent:" + c.Agent.GetId(), "delegator:user-many"} {
			if e.rdb.SIsMember(ctx, e.shardKey(c.Task.GetId(), idx), c.ID).Val() {
				t.Errorf("%s still lists %s", idx, c.ID)
			}
		}
	}
}
