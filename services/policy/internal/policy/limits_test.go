package policy_test

import (
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// The domain's limits (for requests built without a proto) are the
// protovalidate rules gRPC requests meet: a change to one fails here until
// the other follows.
func TestLimitsMatchTheProtoRules(t *testing.T) {
	t.Parallel()
	rules := func(m proto.Message, field string) *validate.FieldRules {
		fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(field))
		if fd == nil {
			t.Fatalf("%T has no field %s", m, field)
		}
		r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
		return r
	}
	agent, delegator, task, eval, held := &identityv1.Agent{}, &identityv1.Delegator{}, &identityv1.Task{}, &policyv1.EvaluateRequest{}, &policyv1.HeldScopes{}
	tests := []struct {
		name string
		rule uint64
		want int
	}{
		{"Agent.id max_len", rules(agent, "id").GetString().GetMaxLen(), policy.MaxIDBytes},
		{"Agent.platform max_len", rules(agent, "platform").GetString().GetMaxLen(), policy.MaxShortFieldBytes},
		{"Agent.attributes max_pairs", rules(agent, "attributes").GetMap().GetMaxPairs(), policy.MaxAttributes},
		{"Agent.attributes key max_len", rules(agent, "attributes").GetMap().GetKeys().GetString().GetMaxLen(), policy.MaxAttrKeyBytes},
		{"Agent.attributes value max_len", rules(agent, "attributes").GetMap().GetValues().GetString().GetMaxLen(), policy.MaxAttrValueBytes},
		{"Delegator.id max_len", rules(delegator, "id").GetString().GetMaxLen(), policy.MaxIDBytes},
		{"Delegator.attributes max_pairs", rules(delegator, "attributes").GetMap().GetMaxPairs(), policy.MaxAttributes},
		{"Delegator.attributes key max_len", rules(delegator, "attributes").GetMap().GetKeys().GetString().GetMaxLen(), policy.MaxAttrKeyBytes},
		{"Delegator.attributes value max_len", rules(delegator, "attributes").GetMap().GetValues().GetString().GetMaxLen(), policy.MaxAttrValueBytes},
		{"Delegator.entitlements max_items", rules(delegator, "entitlements").GetRepeated().GetMaxItems(), policy.MaxEntitlements},
		{"Delegator.entitlements item max_len", rules(delegator, "entitlements").GetRepeated().GetItems().GetString().GetMaxLen(), policy.MaxScopeBytes},
		{"Delegator.time_zone max_len", rules(delegator, "time_zone").GetString().GetMaxLen(), policy.MaxShortFieldBytes},
		{"Task.id max_len", rules(task, "id").GetString().GetMaxLen(), policy.MaxIDBytes},
		{"Task.purpose max_len", rules(task, "purpose").GetString().GetMaxLen(), policy.MaxPurposeBytes},
		{"EvaluateRequest.scopes max_items", rules(eval, "scopes").GetRepeated().GetMaxItems(), policy.MaxScopes},
		{"EvaluateRequest.scopes item max_len", rules(eval, "scopes").GetRepeated().GetItems().GetString().GetMaxLen(), policy.MaxScopeBytes},
		{"EvaluateRequest.audience max_len", rules(eval, "audience").GetString().GetMaxLen(), policy.MaxShortFieldBytes},
		{"EvaluateRequest.agent_chain max_items", rules(eval, "agent_chain").GetRepeated().GetMaxItems(), policy.MaxAgentChain},
		{"HeldScopes.scopes max_items", rules(held, "scopes").GetRepeated().GetMaxItems(), policy.MaxEntitlements},
		{"HeldScopes.scopes item max_len", rules(held, "scopes").GetRepeated().GetItems().GetString().GetMaxLen(), policy.MaxScopeBytes},
	}
	for _, tt := range tests {
		if tt.rule != uint64(tt.want) {
			t.Errorf("%s = %d in the proto, %d in package policy", tt.name, tt.rule, tt.want)
		}
	}
}
