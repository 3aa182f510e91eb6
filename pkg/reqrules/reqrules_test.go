package reqrules_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/reqrules"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

func issueRequest() *issuerv1.IssueCredentialRequest {
	return &issuerv1.IssueCredentialRequest{
		Agent:     &identityv1.Agent{Id: "agent:a", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Attributes: map[string]string{"k": "v"}},
		Delegator: &identityv1.Delegator{Id: "user:d", TimeZone: "Europe/Paris", Entitlements: []string{"tickets:read"}},
		Task:      &identityv1.Task{Id: "t", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
		Scopes:    []string{"tickets:read"},
		Ttl:       durationpb.New(time.Minute),
		Audience:  "api",
		CnfJkt:    "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
	}
}

func evaluateRequest() *policyv1.EvaluateRequest {
	r := issueRequest()
	return &policyv1.EvaluateRequest{Agent: r.Agent, Delegator: r.Delegator, Task: r.Task, Scopes: r.Scopes, Ttl: r.Ttl, Audience: r.Audience}
}

func fields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var re *reqrules.Error
	if !errors.As(err, &re) {
		t.Fatalf("Check = %v; want *reqrules.Error", err)
	}
	var out []string
	for _, v := range re.Violations {
		out = append(out, v.Field)
	}
	return out
}

func TestValidRequestsPass(t *testing.T) {
	t.Parallel()
	for _, m := range []proto.Message{issueRequest(), evaluateRequest()} {
		if err := reqrules.Check(m); err != nil {
			t.Errorf("Check(%T) = %v; want nil", m, err)
		}
	}
}

// Every request field with a rule refuses a bad value, naming that field.
func TestEveryRuleRefusesABadValue(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	issue := []struct {
		field string
		edit  func(r *issuerv1.IssueCredentialRequest)
	}{
		{"agent", func(r *issuerv1.IssueCredentialRequest) { r.Agent = nil }},
		{"agent.id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "  " }},
		{"agent.id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = long(257) }},
		{"agent.class", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Class = 0 }},
		{"agent.class", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Class = 9 }},
		{"agent.platform", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Platform = long(257) }},
		{"agent.attributes", func(r *issuerv1.IssueCredentialRequest) {
			for i := range 33 {
				r.Agent.Attributes[long(i+1)] = "v"
			}
		}},
		{`agent.attributes["` + long(129) + `"]`, func(r *issuerv1.IssueCredentialRequest) { r.Agent.Attributes[long(129)] = "v" }},
		{`agent.attributes["k"]`, func(r *issuerv1.IssueCredentialRequest) { r.Agent.Attributes["k"] = long(1025) }},
		{"delegator", func(r *issuerv1.IssueCredentialRequest) { r.Delegator = nil }},
		{"delegator.id", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.Id = "" }},
		{"delegator.entitlements[0]", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.Entitlements = []string{"a b"} }},
		{"delegator.time_zone", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.TimeZone = "Mars/Base" }},
		{"delegator.time_zone", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.TimeZone = "Local" }},
		{"delegator.authenticate_time", func(r *issuerv1.IssueCredentialRequest) {
			r.Delegator.AuthenticateTime = &timestamppb.Timestamp{Nanos: -1}
		}},
		{"task", func(r *issuerv1.IssueCredentialRequest) { r.Task = nil }},
		{"task.id", func(r *issuerv1.IssueCredentialRequest) { r.Task.Id = "" }},
		{"task.purpose", func(r *issuerv1.IssueCredentialRequest) { r.Task.Purpose = long(1025) }},
		{"task.sensitivity", func(r *issuerv1.IssueCredentialRequest) { r.Task.Sensitivity = 0 }},
		{"task.deadline_time", func(r *issuerv1.IssueCredentialRequest) {
			r.Task.DeadlineTime = &timestamppb.Timestamp{Seconds: 1 << 62}
		}},
		{"scopes", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = nil }},
		{"scopes", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{"a", "a"} }},
		{"scopes[0]", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{"a\tb"} }},
		{"scopes[0]", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{long(129)} }},
		{"ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = nil }},
		{"ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = durationpb.New(999 * time.Millisecond) }},
		{"audience", func(r *issuerv1.IssueCredentialRequest) { r.Audience = "a b" }},
		{"cnf_jkt", func(r *issuerv1.IssueCredentialRequest) { r.CnfJkt = "abc" }},
	}
	for _, tt := range issue {
		r := issueRequest()
		tt.edit(r)
		if got := fields(t, reqrules.Check(r)); !contains(got, tt.field) {
			t.Errorf("IssueCredentialRequest with bad %s: violations %v", tt.field, got)
		}
	}
	scopes := make([]string, 65)
	for i := range scopes {
		scopes[i] = long(i + 1)
	}
	evaluate := []struct {
		field string
		edit  func(r *policyv1.EvaluateRequest)
	}{
		{"scopes", func(r *policyv1.EvaluateRequest) { r.Scopes = scopes }},
		{"agent_chain", func(r *policyv1.EvaluateRequest) { r.AgentChain = make([]*identityv1.Agent, 17) }},
		{"agent_chain_scopes", func(r *policyv1.EvaluateRequest) {
			r.AgentChain = []*identityv1.Agent{{Id: "p"}}
			r.AgentChainScopes = []*policyv1.HeldScopes{{}, {}}
		}},
		{"agent_chain_scopes[0].scopes[0]", func(r *policyv1.EvaluateRequest) {
			r.AgentChain = []*identityv1.Agent{{Id: "p"}}
			r.AgentChainScopes = []*policyv1.HeldScopes{{Scopes: []string{""}}}
		}},
		{"decision_time", func(r *policyv1.EvaluateRequest) { r.DecisionTime = &timestamppb.Timestamp{Nanos: 2e9} }},
		{"delegator.time_zone", func(r *policyv1.EvaluateRequest) { r.Delegator.TimeZone = "Nowhere" }},
	}
	for _, tt := range evaluate {
		r := evaluateRequest()
		tt.edit(r)
		if got := fields(t, reqrules.Check(r)); !contains(got, tt.field) {
			t.Errorf("EvaluateRequest with bad %s: violations %v", tt.field, got)
		}
	}
}

// The issuer and policy agree: the same bad agent is refused by both.
func TestIssuerAndPolicyRequestsRefuseTheSameFields(t *testing.T) {
	t.Parallel()
	bad := func(a *identityv1.Agent, d *identityv1.Delegator) {
		a.Attributes[strings.Repeat("k", 129)] = "v"
		d.TimeZone = "Europe/Atlantis"
	}
	ir, er := issueRequest(), evaluateRequest()
	bad(ir.Agent, ir.Delegator)
	bad(er.Agent, er.Delegator)
	gi, ge := fields(t, reqrules.Check(ir)), fields(t, reqrules.Check(er))
	if strings.Join(gi, ",") != strings.Join(ge, ",") || len(gi) != 2 {
		t.Errorf("issuer request violations %v, policy request violations %v; want the same two", gi, ge)
	}
}

func TestEveryViolationIsReportedNotOnlyTheFirst(t *testing.T) {
	t.Parallel()
	r := issueRequest()
	r.Agent.Id = ""
	r.Delegator.TimeZone = "Mars/Base"
	r.Scopes = []string{"a b"}
	r.Ttl = nil
	r.CnfJkt = "x"
	got := fields(t, reqrules.Check(r))
	for _, f := range []string{"agent.id", "delegator.time_zone", "scopes[0]", "ttl", "cnf_jkt"} {
		if !contains(got, f) {
			t.Errorf("violations %v lack %s", got, f)
		}
	}
}

func TestViolationsNeverQuoteAttributeValues(t *testing.T) {
	t.Parallel()
	r := issueRequest()
	secret := "s3cr3t-" + strings.Repeat("v", 1100)
	r.Agent.Attributes["k"] = secret
	if err := reqrules.Check(r); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("Check = %v; want a violation that does not quote the value", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func BenchmarkCheckIssueRequest(b *testing.B) {
	r := issueRequest()
	if err := reqrules.Prepare(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := reqrules.Check(r); err != nil {
			b.Fatal(err)
		}
	}
}
