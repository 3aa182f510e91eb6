package subjecttoken_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

func TestRequestCannotAssertWhatTheTokenDoesNotProve(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	bobs, err := v.Verify(context.Background(), p.Tokens(bob).IDToken, subjecttoken.TypeIDToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		asserted  subjecttoken.Asserted
		wantField string // "" means accepted
		unproven  bool
	}{
		{"nothing asserted", subjecttoken.Asserted{}, "", false},
		{"the same fields", subjecttoken.Asserted{
			ID: "user:bob@example.com", Attributes: map[string]string{"mfa": "false"},
			Entitlements: []string{"tickets:write", "ledger:read"}, AuthenticatedAt: bobs.AuthenticatedAt,
		}, "", false},
		{"age_verified the token lacks", subjecttoken.Asserted{
			Attributes: map[string]string{"age_verified": "true"},
		}, "attributes.age_verified", true},
		{"MFA the token does not show", subjecttoken.Asserted{
			Attributes: map[string]string{"mfa": "true"},
		}, "attributes.mfa", false},
		{"another delegator", subjecttoken.Asserted{ID: "user:ceo@example.com"}, "id", false},
		{"more entitlements", subjecttoken.Asserted{
			Entitlements: []string{"ledger:read", "tickets:write", "admin:*"},
		}, "entitlements", false},
		{"authenticated in 2099", subjecttoken.Asserted{
			AuthenticatedAt: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		}, "authenticated_at", false},
		{"a time zone the token does not give", subjecttoken.Asserted{TimeZone: "Pacific/Kiritimati"}, "time_zone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := subjecttoken.CheckAsserted(tc.asserted, bobs)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("CheckAsserted = %v, want nil", err)
				}
				return
			}
			var ae *subjecttoken.AssertionError
			if !errors.As(err, &ae) || !errors.Is(err, subjecttoken.ErrAssertionMismatch) {
				t.Fatalf("CheckAsserted = %v, want an *AssertionError", err)
			}
			if ae.Field != tc.wantField || ae.Unproven != tc.unproven {
				t.Errorf("AssertionError{Field: %q, Unproven: %v}, want {%q, %v}", ae.Field, ae.Unproven, tc.wantField, tc.unproven)
			}
		})
	}
}
