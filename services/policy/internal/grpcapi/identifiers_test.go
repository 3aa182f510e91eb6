package grpcapi_test

import (
	"context"
	"testing"

	"golang.org/x/text/unicode/norm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/statusreason"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// TestLookAlikeIdIsRefusedByPolicy sends Evaluate requests whose ids hold
// U+202E or U+200B, or are not in NFC: INVALID_ARGUMENT naming the field,
// the same rule the issuer applies (pkg/reqrules).
func TestLookAlikeIdIsRefusedByPolicy(t *testing.T) {
	t.Parallel()
	ts := start(t)
	for _, tc := range []struct {
		name, field string
		edit        func(*policyv1.EvaluateRequest)
	}{
		{"U+202E in agent id", "agent.id", func(r *policyv1.EvaluateRequest) { r.Agent.Id = "agent:\u202ea3f7-hcraeser" }},
		{"U+200B in delegator id", "delegator.id", func(r *policyv1.EvaluateRequest) { r.Delegator.Id = "user:ali\u200bce@example.com" }},
		{"newline in a scope", "scopes[1]", func(r *policyv1.EvaluateRequest) { r.Scopes[1] = "tickets:read\nadmin" }},
		{"decomposed task id", "task.id", func(r *policyv1.EvaluateRequest) { r.Task.Id = norm.NFD.String("tâche-1") }},
	} {
		req := evaluateRequest()
		tc.edit(req)
		_, err := ts.client.Evaluate(context.Background(), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: Evaluate() = %v, want InvalidArgument", tc.name, err)
			continue
		}
		var named bool
		for _, fv := range statusreason.BadRequest(err) {
			named = named || fv.GetField() == tc.field
		}
		if !named {
			t.Errorf("%s: %v does not name %s", tc.name, err, tc.field)
		}
	}
}
