package reqrules_test

import (
	"slices"
	"testing"

	"golang.org/x/text/unicode/norm"

	"github.com/jitid/jitid/pkg/reqrules"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

func TestIdentifierRefusesControlInvisibleAndNonNFC(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"user:alice", "agent:café", "tâche-1", "tickets:read", "用户"} {
		if err := reqrules.Identifier(s); err != nil {
			t.Errorf("Identifier(%q) = %v, want nil", s, err)
		}
	}
	for name, s := range map[string]string{
		"newline":            "user:alice\nuser:bob",
		"tab":                "user:\talice",
		"NUL":                "user:alice\x00",
		"zero width space":   "user:ali\u200bce",
		"right-to-left":      "user:\u202eecila",
		"byte order mark":    "\ufeffuser:alice",
		"soft hyphen":        "user:al\u00adice",
		"invalid UTF-8":      "user:\xffalice",
		"decomposed e+acute": "agent:cafe\u0301",
	} {
		if err := reqrules.Identifier(s); err == nil {
			t.Errorf("%s: Identifier(%q) = nil, want an error", name, s)
		}
	}
}

func TestLookAlikeIdIsRefusedByTheIssuerAndPolicyRulesAlike(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  func(*issuerv1.IssueCredentialRequest)
		field string
	}{
		{"agent id with U+202E", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "agent:\u202ea7f3" }, "agent.id"},
		{"delegator id with U+200B", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.Id = "user:ali\u200bce" }, "delegator.id"},
		{"task id with a newline", func(r *issuerv1.IssueCredentialRequest) { r.Task.Id = "t\nforged" }, "task.id"},
		{"platform with U+200B", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Platform = "bot\u200b" }, "agent.platform"},
		{"scope with U+202E", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{"tickets:read", "tickets:\u202edaer"} }, "scopes[1]"},
		{"agent attribute key with U+200B", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Attributes = map[string]string{"te\u200bam": "x"} }, "agent.attributes"},
		{"delegator attribute key with a newline", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.Attributes = map[string]string{"dept\n": "x"} }, "delegator.attributes"},
		{"decomposed agent id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = norm.NFD.String("agent:café") }, "agent.id"},
	}
	for _, c := range cases {
		issue := issueRequest()
		c.edit(issue)
		if got := fields(t, reqrules.Check(issue)); !slices.Contains(got, c.field) {
			t.Errorf("%s: issuer rules name %v, want %s", c.name, got, c.field)
		}
		eval := evaluateRequest()
		eval.Agent, eval.Delegator, eval.Task, eval.Scopes = issue.Agent, issue.Delegator, issue.Task, issue.Scopes
		if got := fields(t, reqrules.Check(eval)); !slices.Contains(got, c.field) {
			t.Errorf("%s: policy rules name %v, want %s", c.name, got, c.field)
		}
	}
	chained := evaluateRequest()
	chained.AgentChain = []*identityv1.Agent{{Id: "agent:ok"}, {Id: "agent:\u202ekcatta"}}
	if got := fields(t, reqrules.Check(chained)); !slices.Contains(got, "agent_chain[1].id") {
		t.Errorf("look-alike id in the agent chain: rules name %v, want agent_chain[1].id", got)
	}
}
