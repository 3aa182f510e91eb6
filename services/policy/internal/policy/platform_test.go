package policy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

const (
	supportBot = "spiffe://acme.example/platform/support-bot"
	batch      = "spiffe://acme.example/platform/batch"
)

// TestPlatformIsAParentOfTheAgent: policies decide on the authenticated
// platform, as `principal in Jitid::Platform::"..."` or context.platform;
// a request without one (an old caller) matches neither.
func TestPlatformIsAParentOfTheAgent(t *testing.T) {
	t.Parallel()
	engine := newEngine(compile(t, `
@id("by-entity") permit (principal in Jitid::Platform::"`+supportBot+`", action == Jitid::Action::"tickets:read", resource);
@id("by-context") permit (principal, action == Jitid::Action::"tickets:comment", resource) when { context.platform == "`+supportBot+`" };
@id("not-empty") permit (principal, action == Jitid::Action::"tickets:hold", resource) when { context.platform != "" };
`))
	scopes := []string{"tickets:read", "tickets:comment", "tickets:hold"}
	for _, tc := range []struct {
		name, platform string
		chain          []policy.Agent
		want           []string
	}{
		{"the platform", supportBot, nil, scopes},
		{"a sub-agent of the platform", supportBot, []policy.Agent{{ID: "parent"}}, scopes},
		{"another platform", batch, nil, []string{"tickets:hold"}},
		{"no platform", "", nil, nil},
	} {
		d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
			r.Scopes = scopes
			r.Platform = tc.platform
			r.AgentChain = tc.chain
		}))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.GrantedScopes, tc.want) {
			t.Errorf("%s: granted %v, want %v", tc.name, d.GrantedScopes, tc.want)
		}
	}
}

// TestPlatformThatMayNotAssertGetsDelegatorUnproven: a delegator no token
// proved is accepted only from a platform a policy permits the action
// delegator:assert, for that delegator; the check sees the sensitivity
// the catalogue raises the task to.
func TestPlatformThatMayNotAssertGetsDelegatorUnproven(t *testing.T) {
	t.Parallel()
	set, err := policy.Compile("test", []policy.File{
		{Name: "p.cedar", Path: "p.cedar", Content: []byte(`
@id("all") permit (principal, action, resource);
@id("batch-asserts-service-accounts")
permit (principal == Jitid::Platform::"` + batch + `", action == Jitid::Action::"delegator:assert", resource is Jitid::Delegator)
when { resource.id like "svc:*" && context.sensitivity != "CRITICAL" };
`)},
		{Name: "scopes.yaml", Path: "scopes.yaml", Content: []byte("scopes:\n  - {scope: reports:read, min_sensitivity: LOW}\n  - {scope: payments:transfer, min_sensitivity: CRITICAL}\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	engine := newEngine(set)
	for _, tc := range []struct {
		name, platform, delegator string
		scopes                    []string
		asserted, unproven        bool
	}{
		{"the batch asserts a service account", batch, "svc:ledger", []string{"reports:read"}, true, false},
		{"the batch asserts a person", batch, "alice", []string{"reports:read"}, true, true},
		{"another platform asserts", supportBot, "svc:ledger", []string{"reports:read"}, true, true},
		{"no platform asserts", "", "svc:ledger", []string{"reports:read"}, true, true},
		{"the batch asserts for a LOW-labelled transfer", batch, "svc:ledger", []string{"reports:read", "payments:transfer"}, true, true},
		{"a proven delegator needs no permit", supportBot, "alice", []string{"reports:read"}, false, false},
	} {
		d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
			r.Platform, r.DelegatorAsserted, r.Delegator.ID, r.Scopes = tc.platform, tc.asserted, tc.delegator, tc.scopes
		}))
		if err != nil {
			t.Fatal(err)
		}
		if d.DelegatorUnproven != tc.unproven || d.Allow == tc.unproven {
			t.Errorf("%s: allow %v, delegator_unproven %v (%q); want unproven %v", tc.name, d.Allow, d.DelegatorUnproven, d.Reasons, tc.unproven)
		}
		if tc.unproven && (len(d.Reasons) != 1 || len(d.GrantedScopes) != 0) {
			t.Errorf("%s: reasons %q, granted %v; want one reason and nothing", tc.name, d.Reasons, d.GrantedScopes)
		}
	}
	d, _ := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Platform, r.DelegatorAsserted, r.Scopes = supportBot, true, []string{"reports:read"}
	}))
	if want := `platform "` + supportBot + `" may not assert delegators; send the delegator's subject_token`; !slices.Equal(d.Reasons, []string{want}) {
		t.Errorf("reasons = %q, want %q", d.Reasons, want)
	}
	// The check is explained, with the policies that name its action.
	ex, err := engine.Explain(context.Background(), request(func(r *policy.Request) {
		r.Platform, r.DelegatorAsserted, r.Delegator.ID, r.Scopes = batch, true, "alice", []string{"reports:read"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if a := ex.Assertion; a == nil || a.Granted || len(a.Policies) != 1 || a.Policies[0].ID != "batch-asserts-service-accounts" || a.Policies[0].Applied {
		t.Errorf("Explain assertion = %+v, want batch-asserts-service-accounts explained as not applying", a)
	}
}

func TestTheAssertActionIsNoScope(t *testing.T) {
	t.Parallel()
	_, err := defaultEngine(t).Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Scopes = []string{policy.AssertDelegatorAction}
	}))
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Field != "scopes[0]" {
		t.Errorf("Evaluate of scope %q = %v, want a FieldError on scopes[0]", policy.AssertDelegatorAction, err)
	}
}
