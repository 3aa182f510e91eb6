package access_test

import (
	"errors"
	"testing"

	"github.com/jitid/jitid/services/policy/internal/access"
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	rules := access.Rules{Evaluators: []string{"spiffe://td/issuer"}, Admins: []string{"spiffe://td/admin"}}
	tests := []struct {
		name     string
		caller   string
		known    bool
		setsTime bool
		want     error
	}{
		{"no caller", "", false, false, access.ErrUnauthenticated},
		{"empty caller", "", true, false, access.ErrUnauthenticated},
		{"evaluator", "spiffe://td/issuer", true, false, nil},
		{"evaluator setting the time", "spiffe://td/issuer", true, true, access.ErrNotAllowed},
		{"admin setting the time", "spiffe://td/admin", true, true, nil},
		{"platform", "spiffe://td/platform", true, false, access.ErrNotAllowed},
		{"a prefix of the evaluator is not it", "spiffe://td/iss", true, false, access.ErrNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := rules.Evaluate(tt.caller, tt.known, tt.setsTime)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Evaluate() = %v, want %v", err, tt.want)
			}
		})
	}
}
