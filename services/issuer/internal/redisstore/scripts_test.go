package redisstore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
	"github.com/jitid/jitid/testkit/testserver"
)

// scriptEnv is one shard of a store over a test's own keys, for running
// the scripts' wrappers directly.
type scriptEnv struct {
	rdb *redis.Client
	sh  shard
}

func newScriptEnv(t *testing.T) scriptEnv {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testserver.RedisAddr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(rdb, Options{Prefix: testserver.Namespace(t), Shards: 1})
	return scriptEnv{rdb: rdb, sh: s.shards[0]}
}

// issue runs issue.lua for credential id of task, agent a and delegator d,
// a child of parent when parent is set.
func (e scriptEnv) issue(t *testing.T, id, parent string, extra ...any) issueResult {
	t.Helper()
	return e.issueAs(t, "p-a", id, parent, extra...)
}

// issueAs is issue with caller as the platform asking.
func (e scriptEnv) issueAs(t *testing.T, caller, id, parent string, extra ...any) issueResult {
	t.Helper()
	sh := e.sh
	c := issueCall{Cred: sh.cred(id), Task: sh.task("task"), Agent: sh.agent("a"), Delegator: sh.delegator("d"),
		Expiry: sh.expiry, Expired: sh.expired, Done: sh.done("task"), Outbox: sh.outbox, Owner: sh.owner("task"),
		Caller: caller, OwnerTTLMS: 60000,
		ID: id, ExpireMS: time.Now().Add(time.Minute).UnixMilli(), EventID: "ev-" + id, Subject: "s", Payload: []byte("{}"),
		ExpiredRecord: expiredRecord("exp-"+id, []byte("pb"), "task", "a", "d"),
		Fields:        append([]any{redisscripts.FieldDelegatorID, "d", redisscripts.FieldAgentID, "a"}, extra...)}
	if parent != "" {
		c.Parent, c.ParentChildren, c.Marks = sh.cred(parent), sh.children(parent), sh.marks
	}
	res, err := c.Run(context.Background(), e.rdb)
	if err != nil {
		t.Fatalf("issue %s: %v", id, err)
	}
	return res
}

func (e scriptEnv) target(id string) revokeTarget {
	sh := e.sh
	return revokeTarget{Cred: sh.cred(id), Task: sh.task("task"), Agent: sh.agent("a"), Delegator: sh.delegator("d"),
		Children: sh.children(id), ID: id, EventID: "rev-" + id, Subject: "s", Payload: []byte("{}")}
}

func TestIssueScriptWritesOnceAndRefusesWhatItMust(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	if got := e.issue(t, "c1", ""); got != issueWritten {
		t.Fatalf("first issue = %d, want written", got)
	}
	if got := e.issue(t, "c1", ""); got != issueIDLive {
		t.Errorf("issue of a live id = %d, want id live", got)
	}
	if got := e.issue(t, "c2", "c1"); got != issueWritten {
		t.Errorf("exchange from a live parent = %d, want written", got)
	}
	if kids := e.rdb.SMembers(ctx, e.sh.children("c1")).Val(); !slices.Equal(kids, []string{"c2"}) {
		t.Errorf("children of c1 = %v, want [c2]", kids)
	}
	if got := e.issue(t, "c3", "gone"); got != issueParentGone {
		t.Errorf("exchange from a missing parent = %d, want parent gone", got)
	}
	if _, err := (&markCall{Marks: e.sh.marks, Index: e.sh.delegator("d"), Member: markMember(issuer.Selector{Kind: issuer.ByDelegator, ID: "d"}), RetentionMS: 60000}).Run(ctx, e.rdb); err != nil {
		t.Fatal(err)
	}
	if got := e.issue(t, "c4", "c1"); got != issueParentGone {
		t.Errorf("exchange from a marked parent = %d, want parent gone", got)
	}
	e.rdb.Set(ctx, e.sh.done("task"), "1", time.Minute)
	if got := e.issue(t, "c5", ""); got != issueTaskCompleted {
		t.Errorf("issue for a completed task = %d, want task completed", got)
	}
	if w := e.rdb.HGet(ctx, e.sh.cred("c1"), redisscripts.FieldWritten).Val(); w == "" {
		t.Error("no written stamp on the credential")
	}
}

func TestUseScriptCountsUpToTheLimit(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	use := func(id string) useResult {
		t.Helper()
		c := useCall{Cred: e.sh.cred(id), Outbox: e.sh.outbox, Marks: e.sh.marks, EventID: "ev", Subject: "s", Payload: []byte("{}")}
		r, err := c.Run(ctx, e.rdb)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := use("missing"); r.state != useNotLive {
		t.Errorf("use of a missing credential: state %d, want not live", r.state)
	}
	e.issue(t, "c1", "", redisscripts.FieldMaxUses, "2")
	for want := 1; want <= 2; want++ {
		r := use("c1")
		if r.state != useCounted || r.hash[redisscripts.FieldUses] != strconv.Itoa(want) || r.hash[redisscripts.FieldDelegatorID] != "d" {
			t.Fatalf("use %d: %+v, want counted with uses %d and the hash", want, r, want)
		}
	}
	if r := use("c1"); r.state != useUsedUp || r.uses != 3 {
		t.Errorf("use past the limit: %+v, want used up at 3", r)
	}
	if n := e.rdb.XLen(ctx, e.sh.outbox).Val(); n != 2 {
		t.Errorf("outbox holds %d entries, want the issued and the refused events", n)
	}
}

func TestMarkScriptMarksOnlyAShardHoldingTheIndex(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	mark := markCall{Marks: e.sh.marks, Index: e.sh.delegator("d"), Member: redisscripts.MarkDelegator + "d", RetentionMS: 60000}
	if at, err := mark.Run(ctx, e.rdb); err != nil || at != 0 {
		t.Fatalf("mark with an empty index = %d, %v; want 0", at, err)
	}
	e.issue(t, "c1", "")
	at, err := mark.Run(ctx, e.rdb)
	if err != nil || at <= 0 {
		t.Fatalf("mark = %d, %v; want Redis's time", at, err)
	}
	if got := e.rdb.ZScore(ctx, e.sh.marks, mark.Member).Val(); int64(got) != at {
		t.Errorf("mark stored %v, returned %d", got, at)
	}
}

func TestRevokeScriptRevokesOnceAndRefusesAMissingChild(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	e.issue(t, "c1", "")
	e.issue(t, "c2", "c1")
	revoke := func(ids ...string) revokeResult {
		t.Helper()
		c := revokeCall{Expiry: e.sh.expiry, Expired: e.sh.expired, Outbox: e.sh.outbox, Prefix: e.sh.prefix}
		for _, id := range ids {
			c.Targets = append(c.Targets, e.target(id))
		}
		r, err := c.Run(ctx, e.rdb)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := revoke("c1"); !r.conflict {
		t.Errorf("revoke of a parent without its live child = %+v, want a conflict", r)
	}
	if r := revoke("c1", "c2"); r.conflict || !slices.Equal(r.revoked, []string{"c1", "c2"}) {
		t.Errorf("revoke of the tree = %+v, want [c1 c2] revoked", r)
	}
	if r := revoke("c1", "c2"); r.conflict || len(r.revoked) != 0 {
		t.Errorf("second revoke = %+v, want nothing revoked", r)
	}
	if n := e.rdb.Exists(ctx, e.sh.cred("c1"), e.sh.cred("c2")).Val(); n != 0 {
		t.Errorf("%d credential keys left", n)
	}
}

func TestCompleteScriptRefusesAStaleViewAndCompletesOnce(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	e.issue(t, "c1", "")
	e.issue(t, "c2", "")
	complete := func(members []string, targets ...string) completeResult {
		t.Helper()
		c := completeCall{Expiry: e.sh.expiry, Expired: e.sh.expired, Outbox: e.sh.outbox, Done: e.sh.done("task"),
			Task: e.sh.task("task"), Owner: e.sh.owner("task"), Caller: "p-a", Admin: "0", DoneTTLMS: 60000, EventID: "done", Subject: "s", Payload: []byte("{}"), Members: members}
		for _, id := range targets {
			c.Targets = append(c.Targets, e.target(id))
		}
		r, err := c.Run(ctx, e.rdb)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := complete([]string{"c1"}, "c1"); !r.conflict {
		t.Errorf("complete missing a member = %+v, want a conflict", r)
	}
	if r := complete([]string{"c1", "c2"}, "c1", "c2"); r.conflict || r.alreadyDone || !slices.Equal(r.revoked, []string{"c1", "c2"}) {
		t.Errorf("complete = %+v, want c1 and c2 revoked, task completed now", r)
	}
	if r := complete(nil); r.conflict || !r.alreadyDone || len(r.revoked) != 0 {
		t.Errorf("second complete = %+v, want already done, nothing revoked", r)
	}
	if ttl := e.rdb.PTTL(ctx, e.sh.done("task")).Val(); ttl <= 0 {
		t.Errorf("done marker TTL %v", ttl)
	}
}

func TestSweepScriptMovesDueRecordsAndCountsUnreadable(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	e.issue(t, "c1", "")
	e.issue(t, "c2", "")
	e.rdb.HSet(ctx, e.sh.expired, "c2", "\x00\x00\x00\x09cut")
	sweep := sweepCall{Expiry: e.sh.expiry, Expired: e.sh.expired, Outbox: e.sh.outbox,
		NowMS: time.Now().Add(time.Hour).UnixMilli(), Limit: 100, Prefix: e.sh.prefix, Subject: "expired"}
	r, err := sweep.Run(ctx, e.rdb)
	if err != nil || r != (sweepResult{swept: 2, unreadable: 1}) {
		t.Fatalf("sweep = %+v, %v; want 2 swept, 1 unreadable", r, err)
	}
	msgs := e.rdb.XRange(ctx, e.sh.outbox, "-", "+").Val()
	last := msgs[len(msgs)-1].Values
	want := map[string]any{redisscripts.EntryID: "exp-c1", redisscripts.EntrySubject: "expired", redisscripts.EntryPB: "pb"}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("expired entry (-want +got):\n%s", diff)
	}
	if r, err := sweep.Run(ctx, e.rdb); err != nil || r != (sweepResult{}) {
		t.Errorf("second sweep = %+v, %v; want nothing", r, err)
	}
}

// TestDecodersRefuseRepliesOfAnotherShape runs scripts on a real Redis
// that answer as none of the store's scripts does, and checks that each
// decoder reports errUnexpectedReply instead of panicking or guessing.
func TestDecodersRefuseRepliesOfAnotherShape(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	decoders := map[string]func(any) error{
		"issue":    func(v any) error { _, err := decodeIssue(v); return err },
		"use":      func(v any) error { _, err := decodeUse(v); return err },
		"mark":     func(v any) error { _, err := decodeMark(v); return err },
		"revoke":   func(v any) error { _, err := decodeRevoke(v); return err },
		"complete": func(v any) error { _, err := decodeComplete(v); return err },
		"sweep":    func(v any) error { _, err := decodeSweep(v); return err },
	}
	bad := map[string][]string{
		"issue":    {"return 7", "return 'x'", "return {1}"},
		"use":      {"return 1", "return {}", "return {'x'}", "return {3}", "return {0, 1}", "return {2}", "return {2, 'x'}", "return {1}", "return {1, 'a'}", "return {1, 'a', 2}"},
		"mark":     {"return -1", "return 'x'", "return {1}"},
		"revoke":   {"return 1", "return {}", "return {0, 'x'}", "return {1, 2}", "return {3}"},
		"complete": {"return 1", "return {0, 'x'}", "return {2, 3}", "return {4}"},
		"sweep":    {"return 1", "return {1}", "return {1, 'x'}", "return {1, 2}", "return {-1, 0}", "return {1, 0, 0}"},
	}
	for name, scripts := range bad {
		for _, src := range scripts {
			v, err := redis.NewScript(src).Run(context.Background(), e.rdb, nil).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatalf("%s: %v", src, err)
			}
			if err := decoders[name](v); !errors.Is(err, errUnexpectedReply) {
				t.Errorf("decode %s of %q = %v, want errUnexpectedReply", name, src, err)
			}
		}
	}
}

func TestIssueScriptRefusesAnotherPlatformsTask(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	if got := e.issueAs(t, "p-a", "c1", ""); got != issueWritten {
		t.Fatalf("first issue = %d, want written", got)
	}
	if got := e.issueAs(t, "p-b", "c2", ""); got != issueNotOwner {
		t.Errorf("issue by another platform = %d, want not owner", got)
	}
	if got := e.issueAs(t, "p-b", "c3", "c1"); got != issueNotOwner {
		t.Errorf("exchange by another platform = %d, want not owner", got)
	}
	if n := e.rdb.Exists(ctx, e.sh.cred("c2"), e.sh.cred("c3")).Val(); n != 0 {
		t.Errorf("%d refused credentials written", n)
	}
	if o := e.rdb.Get(ctx, e.sh.owner("task")).Val(); o != "p-a" {
		t.Errorf("task owner %q, want p-a", o)
	}
	if ttl := e.rdb.PTTL(ctx, e.sh.owner("task")).Val(); ttl < time.Minute {
		t.Errorf("task owner TTL %v, want past the credential's expiry", ttl)
	}
	// A completed task refuses another platform as another platform's
	// task, not as completed: it learns nothing of it.
	e.rdb.Set(ctx, e.sh.done("task"), "1", time.Minute)
	if got := e.issueAs(t, "p-b", "c4", ""); got != issueNotOwner {
		t.Errorf("issue by another platform into a completed task = %d, want not owner", got)
	}
}

func TestCompleteScriptChecksTheOwner(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	complete := func(task, caller, admin string) completeResult {
		t.Helper()
		c := completeCall{Expiry: e.sh.expiry, Expired: e.sh.expired, Outbox: e.sh.outbox, Done: e.sh.done(task),
			Task: e.sh.task(task), Owner: e.sh.owner(task), Caller: caller, Admin: admin, DoneTTLMS: 60000,
			EventID: "done", Subject: "s", Payload: []byte("{}")}
		r, err := c.Run(ctx, e.rdb)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := complete("never", "p-a", "1"); !r.noOwner {
		t.Errorf("complete of a task never issued for = %+v, want no owner", r)
	}
	if e.rdb.Exists(ctx, e.sh.done("never")).Val() != 0 {
		t.Error("a task never issued for was marked completed")
	}
	e.rdb.Set(ctx, e.sh.owner("t"), "p-a", time.Minute)
	if r := complete("t", "p-b", "0"); !r.notOwner {
		t.Errorf("complete by another platform = %+v, want not owner", r)
	}
	if r := complete("t", "p-b", "1"); r.notOwner || r.noOwner || r.conflict || r.alreadyDone {
		t.Errorf("complete by an admin = %+v, want completed", r)
	}
}

func TestQuotaScriptHoldsUpToTheLimit(t *testing.T) {
	t.Parallel()
	e := newScriptEnv(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	hold := func(id string, exp int64) quotaResult {
		t.Helper()
		r, err := (&quotaCall{Quota: e.sh.quota("d"), NowMS: now, Limit: 2, ID: id, ExpireMS: exp}).Run(ctx, e.rdb)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// One already expired: dropped, not counted.
	e.rdb.ZAdd(ctx, e.sh.quota("d"), redis.Z{Score: float64(now - 1), Member: "old"})
	if r := hold("c1", now+5000); !r.held {
		t.Fatalf("first = %+v, want held", r)
	}
	if r := hold("c2", now+3000); !r.held {
		t.Fatalf("second = %+v, want held", r)
	}
	if r := hold("c3", now+9000); r.held || r.earliest != now+3000 {
		t.Errorf("third = %+v, want full, earliest %d", r, now+3000)
	}
	if n := e.rdb.ZCard(ctx, e.sh.quota("d")).Val(); n != 2 {
		t.Errorf("%d places held, want 2", n)
	}
}
