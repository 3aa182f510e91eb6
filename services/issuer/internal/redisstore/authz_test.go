package redisstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
)

const otherOwner = "spiffe://jitid.test/platform/b"

func completedEvent() *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{Id: randID("ev-"), Type: eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED}
}

// TestTaskBelongsToItsFirstIssuer: the first issuance of a task records
// its owner; another platform's issuance into it is refused with nothing
// written, and so is its completion; a task never issued for is not found.
func TestTaskBelongsToItsFirstIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	task := randID("task-")
	e.issue(t, credential(task, "agent-1", "user-1", time.Minute))
	if owner, err := e.store.TaskOwner(ctx, task); err != nil || owner != testOwner {
		t.Fatalf("TaskOwner() = %q, %v; want %q", owner, err, testOwner)
	}
	before := len(e.keys(t))
	intruder := credential(task, "agent-2", "user-2", time.Minute)
	intruder.Owner = otherOwner
	ev := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, intruder)
	exp := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, intruder)
	if err := e.store.Issue(ctx, intruder, ev, exp); !errors.Is(err, issuer.ErrCallerNotAllowed) {
		t.Fatalf("Issue() into another platform's task = %v, want ErrCallerNotAllowed", err)
	}
	if after := len(e.keys(t)); after != before {
		t.Errorf("%d keys after the refused issuance, %d before", after, before)
	}
	if _, err := e.store.CompleteTask(ctx, task, otherOwner, false, revokedEvent, completedEvent()); !errors.Is(err, issuer.ErrCallerNotAllowed) {
		t.Errorf("CompleteTask() by another platform = %v, want ErrCallerNotAllowed", err)
	}
	if _, err := e.store.CompleteTask(ctx, randID("task-never-"), testOwner, true, revokedEvent, completedEvent()); !errors.Is(err, issuer.ErrTaskNotFound) {
		t.Errorf("CompleteTask() of a task never issued for = %v, want ErrTaskNotFound", err)
	}
	if ids, err := e.store.CompleteTask(ctx, task, otherOwner, true, revokedEvent, completedEvent()); err != nil || len(ids) != 1 {
		t.Errorf("CompleteTask() by an admin = %v, %v; want one id", ids, err)
	}
}

// TestListAndRevokeNarrowedToAnOwner: a platform lists and revokes only
// its own credentials of a delegator, page by page, and another
// platform's stay live.
func TestListAndRevokeNarrowedToAnOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var mine, theirs []string
	for i := range 10 {
		c := credential(randID("task-"), "agent-1", "user-shared", time.Minute)
		if i%2 == 1 {
			c.Owner = otherOwner
			theirs = append(theirs, c.ID)
		} else {
			mine = append(mine, c.ID)
		}
		e.issue(t, c)
	}
	sel := issuer.Selector{Kind: issuer.ByDelegator, ID: "user-shared", Owner: testOwner}
	var listed []string
	token := ""
	for {
		p, err := e.store.List(ctx, sel, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Credentials {
			if c.Owner != testOwner {
				t.Errorf("listed %s of %s", c.ID, c.Owner)
			}
			listed = append(listed, c.ID)
		}
		if token = p.NextToken; token == "" {
			break
		}
	}
	slices.Sort(listed)
	slices.Sort(mine)
	if !slices.Equal(listed, mine) {
		t.Errorf("listed %v, want %v", listed, mine)
	}
	revoked, err := e.store.Revoke(ctx, sel, revokedEvent)
	slices.Sort(revoked)
	if err != nil || !slices.Equal(revoked, mine) {
		t.Errorf("Revoke() = %v, %v; want %v", revoked, err, mine)
	}
	for _, id := range theirs {
		if _, err := e.store.Get(ctx, id, ""); err != nil {
			t.Errorf("another platform's %s: %v, want live", id, err)
		}
	}
}

// TestDelegatorQuota: past its quota a delegator gets a *QuotaError whose
// RetryAfter is the time until its earliest credential expires, and
// nothing is written; a revocation frees a place.
func TestDelegatorQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	st := redisstore.New(e.rdb, redisstore.Options{Prefix: e.prefix, Events: e.events, DelegatorQuota: 3})
	var first *issuer.Credential
	for i := range 3 {
		c := credential(randID("task-"), "agent-1", "user-q", time.Duration(10+i)*time.Minute)
		if err := st.Issue(ctx, c, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = c
		}
	}
	// Another delegator is not held back.
	other := credential(randID("task-"), "agent-1", "user-other", time.Minute)
	if err := st.Issue(ctx, other, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, other), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, other)); err != nil {
		t.Fatalf("another delegator: %v", err)
	}
	before := len(e.keys(t))
	over := credential(randID("task-"), "agent-1", "user-q", time.Minute)
	err := st.Issue(ctx, over, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, over), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, over))
	var q *issuer.QuotaError
	if !errors.As(err, &q) || !errors.Is(err, issuer.ErrQuotaExceeded) {
		t.Fatalf("Issue() past the quota = %v, want a QuotaError", err)
	}
	if want := time.Until(first.ExpiresAt); q.RetryAfter <= 0 || q.RetryAfter > want+time.Second || q.RetryAfter < want-5*time.Second {
		t.Errorf("RetryAfter = %v, want about %v", q.RetryAfter, want)
	}
	if after := len(e.keys(t)); after != before {
		t.Errorf("%d keys after the refused issuance, %d before", after, before)
	}
	if _, err := st.Revoke(ctx, issuer.Selector{Kind: issuer.ByCredential, ID: first.ID}, revokedEvent); err != nil {
		t.Fatal(err)
	}
	if err := st.Issue(ctx, over, event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, over), event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, over)); err != nil {
		t.Errorf("Issue() after a revocation freed a place = %v", err)
	}
}
