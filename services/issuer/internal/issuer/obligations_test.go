package issuer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

func allowWith(obligations ...string) policyFunc {
	return func(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
		return &identityv1.Decision{
			Allow: true, GrantedScopes: r.Scopes, MaxTtl: durationpb.New(time.Hour),
			Obligations: obligations, DecisionId: "d-1",
		}, nil
	}
}

// The issuer meets a decision's obligations before minting, and refuses
// (with a denied event, and no credential) when one is not met or unknown.
func TestIssueObligations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		obligations []string
		delegator   *identityv1.Delegator
		wantDenied  bool
	}{
		{name: "none", delegator: &identityv1.Delegator{Id: "u"}},
		{name: "age verified", obligations: []string{"age_verified"},
			delegator: &identityv1.Delegator{Id: "u", Attributes: map[string]string{"age_verified": "true"}}},
		{name: "age not verified", obligations: []string{"age_verified"},
			delegator: &identityv1.Delegator{Id: "u", Attributes: map[string]string{"age_verified": "false"}}, wantDenied: true},
		{name: "recent authentication", obligations: []string{"mfa_recent"},
			delegator: &identityv1.Delegator{Id: "u", AuthenticateTime: timestamppb.New(t0.Add(-5 * time.Minute))}},
		{name: "stale authentication", obligations: []string{"mfa_recent"},
			delegator: &identityv1.Delegator{Id: "u", AuthenticateTime: timestamppb.New(t0.Add(-16 * time.Minute))}, wantDenied: true},
		{name: "authentication time unknown", obligations: []string{"mfa_recent"},
			delegator: &identityv1.Delegator{Id: "u"}, wantDenied: true},
		{name: "human approval", obligations: []string{"human_approval"},
			delegator: &identityv1.Delegator{Id: "u"}, wantDenied: true},
		{name: "unknown obligation", obligations: []string{"blood_sample"},
			delegator: &identityv1.Delegator{Id: "u"}, wantDenied: true},
		{name: "one of two unmet", obligations: []string{"age_verified", "mfa_recent"},
			delegator: &identityv1.Delegator{Id: "u", Attributes: map[string]string{"age_verified": "true"}}, wantDenied: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Proven by a subject token: a platform cannot assert the
			// attributes and times obligations look at.
			f := newFixture(t, allowWith(tt.obligations...), t0, withVerifier(provedAs(tt.delegator)))
			r := validRequest()
			r.Delegator = nil
			r.SubjectToken, r.SubjectTokenType = testSubjectToken, string(subjecttoken.TypeIDToken)
			_, err := f.iss.Issue(t.Context(), r)
			n, evs := f.store.snapshot()
			if !tt.wantDenied {
				if err != nil {
					t.Fatalf("Issue() = %v, want a credential", err)
				}
				return
			}
			var denied *issuer.DeniedError
			if !errors.As(err, &denied) || !errors.Is(err, issuer.ErrDenied) {
				t.Fatalf("Issue() error = %v, want ErrDenied", err)
			}
			if len(denied.Reasons()) == 0 {
				t.Error("denial without reasons")
			}
			if n != 0 {
				t.Errorf("%d credentials stored after an unmet obligation", n)
			}
			if len(evs) != 1 || evs[0].GetType() != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED || evs[0].GetDecision().GetAllow() {
				t.Errorf("events = %v, want one denied event with allow false", evs)
			}
		})
	}
}
