package issuer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

func withAuthz(c *issuer.Config) {
	c.Admins = []string{adminID}
	c.ResourceServers = map[string][]string{"tickets-api": {resourceServer}}
}

// allowUses allows with a use limit.
func allowUses(n int32) policyFunc {
	return func(ctx context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
		d, err := allow(time.Hour)(ctx, r)
		if d != nil {
			d.MaxUses = n
		}
		return d, err
	}
}

func TestIntrospectReportsActiveOnlyToOwnerAudienceOrAdmin(t *testing.T) {
	t.Parallel()
	for _, uses := range []int32{0, 1} {
		f := newFixture(t, allowUses(uses), t0, withAuthz)
		r := validRequest()
		r.Audience = "tickets-api"
		got, err := f.iss.Issue(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			caller string
			active bool
		}{
			{"", false},
			{platformB, false},
			{"spiffe://jitid.test/rs/other", false},
			{"tickets-api", true}, // a caller whose id is the audience
			{platformA, true},
		} {
			c, err := f.iss.Introspect(t.Context(), tt.caller, got.Token, issuer.Proof{})
			if err != nil || (c != nil) != tt.active {
				t.Errorf("max_uses %d: Introspect() as %q = %v, %v; want active %v", uses, tt.caller, c != nil, err, tt.active)
			}
			if uses == 1 && tt.active {
				break // the one use is spent
			}
		}
		if uses == 1 {
			// Nobody else's presentation counted a use: the owner had it.
			f.store.mu.Lock()
			n := f.store.creds[got.Credential.ID].Uses
			f.store.mu.Unlock()
			if n != 1 {
				t.Errorf("uses counted = %d, want 1 (only the authorized presentation)", n)
			}
			// The replay names the caller presenting it.
			if c, err := f.iss.Introspect(t.Context(), resourceServer, got.Token, issuer.Proof{}); c != nil || err != nil {
				t.Errorf("replay = %v, %v; want inactive", c, err)
			}
			_, evs := f.store.snapshot()
			last := evs[len(evs)-1]
			if last.Type != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED || last.Caller != resourceServer || last.Owner != platformA {
				t.Errorf("use_refused event = %v; want caller %s, owner %s", last, resourceServer, platformA)
			}
			continue
		}
		for _, caller := range []string{adminID, resourceServer} {
			if c, err := f.iss.Introspect(t.Context(), caller, got.Token, issuer.Proof{}); c == nil || err != nil {
				t.Errorf("Introspect() as %s = %v, %v; want active", caller, c, err)
			}
		}
	}
}

func TestLifecycleCallsAuthorizedByCaller(t *testing.T) {
	t.Parallel()
	f := newFixture(t, allow(time.Hour), t0, withAuthz)
	got, err := f.iss.Issue(t.Context(), validRequest())
	if err != nil {
		t.Fatal(err)
	}
	task := got.Credential.Task.GetId()
	byID := issuer.Selector{Kind: issuer.ByCredential, ID: got.Credential.ID}
	for _, caller := range []string{"", platformB} {
		if _, err := f.iss.Revoke(t.Context(), caller, byID, ""); !errors.Is(err, issuer.ErrCallerNotAllowed) {
			t.Errorf("Revoke() by credential as %q = %v, want ErrCallerNotAllowed", caller, err)
		}
		if _, err := f.iss.Revoke(t.Context(), caller, issuer.Selector{Kind: issuer.ByTask, ID: task}, ""); !errors.Is(err, issuer.ErrCallerNotAllowed) {
			t.Errorf("Revoke() by task as %q = %v, want ErrCallerNotAllowed", caller, err)
		}
		if _, err := f.iss.CompleteTask(t.Context(), caller, task, ""); !errors.Is(err, issuer.ErrCallerNotAllowed) {
			t.Errorf("CompleteTask() as %q = %v, want ErrCallerNotAllowed", caller, err)
		}
	}
	if ids, err := f.iss.Revoke(t.Context(), platformB, issuer.Selector{Kind: issuer.ByDelegator, ID: "user:alice@example.com"}, ""); err != nil || len(ids) != 0 {
		t.Errorf("Revoke() by delegator as another platform = %v, %v; want nothing", ids, err)
	}
	if p, err := f.iss.List(t.Context(), platformB, issuer.Selector{Kind: issuer.ByTask, ID: task}, 0, ""); err != nil || len(p.Credentials) != 0 {
		t.Errorf("List() as another platform = %v, %v; want nothing", p.Credentials, err)
	}
	if _, err := f.iss.List(t.Context(), "", issuer.Selector{Kind: issuer.ByTask, ID: task}, 0, ""); !errors.Is(err, issuer.ErrCallerNotAllowed) {
		t.Errorf("List() without a caller = %v, want ErrCallerNotAllowed", err)
	}
	if _, err := f.iss.CompleteTask(t.Context(), platformA, "task-never", ""); !errors.Is(err, issuer.ErrTaskNotFound) {
		t.Errorf("CompleteTask() of a task never issued for = %v, want ErrTaskNotFound", err)
	}
	ids, err := f.iss.CompleteTask(t.Context(), adminID, task, "")
	if err != nil || len(ids) != 1 {
		t.Fatalf("CompleteTask() as admin = %v, %v", ids, err)
	}
	_, evs := f.store.snapshot()
	completed, revoked := evs[len(evs)-1], evs[len(evs)-2]
	if completed.Caller != adminID || completed.Owner != platformA || revoked.Caller != adminID || revoked.Owner != platformA {
		t.Errorf("completed event caller %q owner %q, revoked caller %q owner %q; want the admin and %s",
			completed.Caller, completed.Owner, revoked.Caller, revoked.Owner, platformA)
	}
}
