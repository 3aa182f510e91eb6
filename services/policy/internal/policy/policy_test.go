package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/policies"
)

var testNow = time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)

func defaultEngine(t testing.TB) *policy.Engine {
	t.Helper()
	set, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatalf("default set: %v", err)
	}
	return newEngine(set)
}

func newEngine(set *policy.Set) *policy.Engine {
	return policy.NewEngine(set, policy.EngineOptions{
		Clock:         func() time.Time { return testNow },
		NewDecisionID: func() (string, error) { return "decision-1", nil },
	})
}

func compile(t *testing.T, src string) *policy.Set {
	t.Helper()
	set, err := policy.Compile("test", []policy.File{{Name: "test.cedar", Path: "test.cedar", Content: []byte(src)}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return set
}

func request(mod ...func(*policy.Request)) policy.Request {
	r := policy.Request{
		Agent:     policy.Agent{ID: "agent:research-7f3a", Class: policy.AgentClassEphemeral, Platform: "langgraph"},
		Delegator: policy.Delegator{ID: "user:alice@example.com", Attributes: map[string]string{"age_verified": "true"}},
		Task:      policy.Task{ID: "task-1", Purpose: "buy concert tickets", Sensitivity: policy.SensitivityLow},
		Scopes:    []string{"tickets:read"},
		TTL:       2 * time.Hour,
	}
	for _, m := range mod {
		m(&r)
	}
	if r.Delegator.Entitlements == nil {
		// The delegator holds what is asked, unless a test says otherwise
		// (an empty, non-nil list holds nothing).
		r.Delegator.Entitlements = r.Scopes
	}
	return r
}

// ignoreVolatile drops what other tests check: the hash and per-scope detail.
var ignoreVolatile = cmpopts.IgnoreFields(policy.Decision{}, "PolicyVersion", "Scopes")

func TestDefaultSet(t *testing.T) {
	t.Parallel()
	engine := defaultEngine(t)
	tests := []struct {
		name string
		req  policy.Request
		want policy.Decision
	}{
		{
			name: "low ephemeral",
			req:  request(),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: time.Hour,
				Profile: policy.ProfileMinimal, Policies: []string{"ephemeral-minimal-profile", "low-sensitivity"}, DecisionID: "decision-1"},
		},
		{
			name: "medium recurring",
			req: request(func(r *policy.Request) {
				r.Task.Sensitivity = policy.SensitivityMedium
				r.Agent.Class = policy.AgentClassRecurring
			}),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: 15 * time.Minute,
				Profile: policy.ProfileFull, Policies: []string{"medium-sensitivity", "recurring-full-profile"}, DecisionID: "decision-1"},
		},
		{
			name: "high, requested ttl below the cap",
			req: request(func(r *policy.Request) {
				r.Task.Sensitivity = policy.SensitivityHigh
				r.TTL = time.Minute
			}),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: time.Minute,
				Profile: policy.ProfileMinimal, Policies: []string{"ephemeral-minimal-profile", "high-sensitivity"}, DecisionID: "decision-1"},
		},
		{
			name: "high, unspecified class gets minimal",
			req: request(func(r *policy.Request) {
				r.Task.Sensitivity = policy.SensitivityHigh
				r.Agent.Class = policy.AgentClassUnspecified
			}),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: 5 * time.Minute,
				Profile: policy.ProfileMinimal, Policies: []string{"high-sensitivity"}, DecisionID: "decision-1"},
		},
		{
			name: "critical forbidden",
			req:  request(func(r *policy.Request) { r.Task.Sensitivity = policy.SensitivityCritical }),
			want: policy.Decision{Reasons: []string{`scope "tickets:read": needs human approval`},
				Policies: []string{"critical-needs-human"}, DecisionID: "decision-1"},
		},
		{
			name: "tickets:purchase age verified",
			req:  request(func(r *policy.Request) { r.Scopes = []string{"tickets:purchase"} }),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:purchase"}, MaxTTL: time.Hour,
				Profile: policy.ProfileMinimal, Obligations: []string{"age_verified"},
				Policies:   []string{"ephemeral-minimal-profile", "low-sensitivity", "tickets-purchase-age-verified"},
				DecisionID: "decision-1"},
		},
		{
			name: "tickets:purchase not age verified, other scope granted",
			req: request(func(r *policy.Request) {
				r.Scopes = []string{"tickets:purchase", "tickets:read"}
				r.Delegator.Attributes = map[string]string{"age_verified": "false"}
			}),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: time.Hour,
				Profile:    policy.ProfileMinimal,
				Reasons:    []string{`scope "tickets:purchase": tickets:purchase needs a delegator whose age is verified`},
				Policies:   []string{"ephemeral-minimal-profile", "low-sensitivity", "tickets-purchase-needs-age-verified"},
				DecisionID: "decision-1"},
		},
		{
			name: "tickets:purchase without the attribute",
			req: request(func(r *policy.Request) {
				r.Scopes = []string{"tickets:purchase"}
				r.Delegator.Attributes = nil
			}),
			want: policy.Decision{Reasons: []string{`scope "tickets:purchase": tickets:purchase needs a delegator whose age is verified`},
				Policies: []string{"tickets-purchase-needs-age-verified"}, DecisionID: "decision-1"},
		},
		{
			name: "entitlements narrow the grant",
			req: request(func(r *policy.Request) {
				r.Scopes = []string{"tickets:read", "mail:send", "tickets:read"}
				r.Delegator.Entitlements = []string{"tickets:read"}
			}),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: time.Hour,
				Profile:    policy.ProfileMinimal,
				Reasons:    []string{`scope "mail:send" is not among the delegator's entitlements`},
				Policies:   []string{"ephemeral-minimal-profile", "low-sensitivity"},
				DecisionID: "decision-1"},
		},
		{
			name: "task deadline caps the ttl",
			req:  request(func(r *policy.Request) { r.Task.Deadline = testNow.Add(10 * time.Minute) }),
			want: policy.Decision{Allow: true, GrantedScopes: []string{"tickets:read"}, MaxTTL: 10 * time.Minute,
				Profile: policy.ProfileMinimal, Policies: []string{"ephemeral-minimal-profile", "low-sensitivity"}, DecisionID: "decision-1"},
		},
		{
			name: "task deadline passed",
			req:  request(func(r *policy.Request) { r.Task.Deadline = testNow.Add(-time.Second) }),
			want: policy.Decision{Reasons: []string{`scope "tickets:read": the task deadline has passed`}, DecisionID: "decision-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := engine.Evaluate(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreVolatile); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if got.PolicyVersion != engine.Set().Version() || len(got.PolicyVersion) != 64 {
				t.Errorf("PolicyVersion = %q, want the set's sha-256 %q", got.PolicyVersion, engine.Set().Version())
			}
		})
	}
}

func TestForbidWinsAndFailsClosed(t *testing.T) {
	t.Parallel()
	set := compile(t, `
@id("all") @max_ttl("30m") @profile("FULL") @obligation("mfa_recent, human_approval")
permit (principal, action, resource);

@id("no-mail") @reason("mail is off limits")
forbid (principal, action == Jitid::Action::"mail:send", resource);

// Validates, but overflows at run time.
@id("broken-forbid")
forbid (principal, action == Jitid::Action::"files:delete", resource)
when { context.ttl_seconds * 9223372036854775807 > 0 };

@id("timed")
forbid (principal, action, resource)
when { context.scope like "night:*" && (context.hour < 8 || context.weekday == "Sunday") };
`)
	engine := newEngine(set)
	got, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Scopes = []string{"mail:send", "tickets:read", "files:delete", "night:shift"}
		r.Time = time.Date(2026, 3, 4, 7, 0, 0, 0, time.UTC)
	}))
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	want := policy.Decision{
		Allow:         true,
		GrantedScopes: []string{"tickets:read"},
		MaxTTL:        30 * time.Minute,
		Profile:       policy.ProfileFull,
		Obligations:   []string{"human_approval", "mfa_recent"},
		Reasons: []string{
			`scope "mail:send": mail is off limits`,
			`scope "files:delete": forbid policy "broken-forbid" failed to evaluate`,
			`scope "night:shift": forbidden by policy "timed"`,
		},
		Policies:   []string{"all", "broken-forbid", "no-mail", "timed"},
		DecisionID: "decision-1",
	}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
}

func TestDefaultDeny(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit (principal, action == Jitid::Action::"a", resource);`)
	got, err := newEngine(set).Evaluate(context.Background(), request(func(r *policy.Request) { r.Scopes = []string{"b"} }))
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	want := policy.Decision{Reasons: []string{`no policy permits scope "b"`}, DecisionID: "decision-1"}
	if diff := cmp.Diff(want, got, ignoreVolatile); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
	if got.Scopes[0].Determining != nil {
		t.Errorf("Determining = %v, want none", got.Scopes[0].Determining)
	}
}

func TestAgentChain(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit (principal in Jitid::Agent::"orchestrator", action, resource);`)
	engine := newEngine(set)
	for _, tt := range []struct {
		name  string
		chain []policy.Agent
		allow bool
	}{
		{"no chain", nil, false},
		{"direct parent", []policy.Agent{{ID: "orchestrator"}}, true},
		{"grandparent", []policy.Agent{{ID: "planner"}, {ID: "orchestrator"}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) { r.AgentChain = tt.chain }))
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if got.Allow != tt.allow {
				t.Errorf("Allow = %v, want %v", got.Allow, tt.allow)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	engine := defaultEngine(t)
	long := func(n int) string { return string(make([]byte, n)) }
	many := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		}
		return s
	}
	attrs := map[string]string{}
	for i := range 33 {
		attrs[string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	tests := []struct {
		name  string
		mod   func(*policy.Request)
		field string
	}{
		{"agent id", func(r *policy.Request) { r.Agent.ID = "" }, "agent.id"},
		{"agent id too long", func(r *policy.Request) { r.Agent.ID = long(257) }, "agent.id"},
		{"agent class", func(r *policy.Request) { r.Agent.Class = 9 }, "agent.class"},
		{"agent attributes", func(r *policy.Request) { r.Agent.Attributes = attrs }, "agent.attributes"},
		{"chain agent id", func(r *policy.Request) { r.AgentChain = []policy.Agent{{ID: ""}} }, "agent_chain[0].id"},
		{"delegator id", func(r *policy.Request) { r.Delegator.ID = "" }, "delegator.id"},
		{"delegator attributes", func(r *policy.Request) { r.Delegator.Attributes = attrs }, "delegator.attributes"},
		{"task id", func(r *policy.Request) { r.Task.ID = "" }, "task.id"},
		{"purpose", func(r *policy.Request) { r.Task.Purpose = long(1025) }, "task.purpose"},
		{"sensitivity", func(r *policy.Request) { r.Task.Sensitivity = policy.SensitivityUnspecified }, "task.sensitivity"},
		{"unknown sensitivity", func(r *policy.Request) { r.Task.Sensitivity = 7 }, "task.sensitivity"},
		{"no scopes", func(r *policy.Request) { r.Scopes = nil }, "scopes"},
		{"too many scopes", func(r *policy.Request) { r.Scopes = many(65) }, "scopes"},
		{"empty scope", func(r *policy.Request) { r.Scopes = []string{"a", ""}; r.Delegator.Entitlements = []string{"a"} }, "scopes[1]"},
		{"long scope", func(r *policy.Request) { r.Scopes = []string{long(129)}; r.Delegator.Entitlements = []string{} }, "scopes[0]"},
		{"zero ttl", func(r *policy.Request) { r.TTL = 0 }, "ttl"},
		{"negative ttl", func(r *policy.Request) { r.TTL = -time.Second }, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := engine.Evaluate(context.Background(), request(tt.mod))
			var fe *policy.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, policy.ErrInvalidRequest) {
				t.Fatalf("Evaluate error = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q", fe.Field, tt.field)
			}
		})
	}
	// The limits themselves are accepted.
	if _, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Scopes = many(64)
		r.Agent.ID = long(256)
	})); err != nil {
		t.Errorf("Evaluate at the limits: %v", err)
	}
}

func TestTimeDefaultsToClock(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit (principal, action, resource) when { context.time == datetime("2026-03-04T10:30:00Z") && context.hour == 10 && context.weekday == "Wednesday" };`)
	got, err := newEngine(set).Evaluate(context.Background(), request())
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	if !got.Allow {
		t.Errorf("Allow = false, want true (reasons %q)", got.Reasons)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		src    string
		want   error
		line   int
		policy string
	}{
		{"parse error", "permit (principal, action, resource);\n\npermit (principal action, resource);\n", policy.ErrParse, 3, ""},
		{"unterminated string", "permit (principal, action, resource)\nwhen { context.x == \"abc };\n", policy.ErrParse, 2, ""},
		{"bad max_ttl", "permit (principal, action, resource);\n@id(\"p\")\n@max_ttl(\"15 minutes\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 2, "p"},
		{"negative max_ttl", "@max_ttl(\"-5m\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"bad profile", "@profile(\"EVERYTHING\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"max_ttl on forbid", "@max_ttl(\"5m\")\nforbid (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"empty obligation", "@obligation(\"a,,b\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"empty id", "@id(\"\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"zero max_uses", "@max_uses(\"0\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"word max_uses", "@max_uses(\"once\")\npermit (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"max_uses on forbid", "@max_uses(\"1\")\nforbid (principal, action, resource);\n", policy.ErrBadAnnotation, 1, "test.cedar:0"},
		{"duplicate id", "@id(\"x\")\npermit (principal, action, resource);\n@id(\"x\")\nforbid (principal, action, resource);\n", policy.ErrDuplicateID, 3, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "test.cedar")
			if err := os.WriteFile(path, []byte(tt.src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := policy.Load(dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load error = %v, want %v", err, tt.want)
			}
			var le *policy.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load error = %T, want *LoadError", err)
			}
			want := policy.LoadError{File: path, Line: tt.line, Policy: tt.policy}
			if diff := cmp.Diff(want, *le, cmpopts.IgnoreFields(policy.LoadError{}, "Column", "Err")); diff != "" {
				t.Errorf("LoadError (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadEmpty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("permit (principal, action, resource);"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(dir); !errors.Is(err, policy.ErrEmptySet) {
		t.Errorf("Load error = %v, want ErrEmptySet", err)
	}
	if _, err := policy.Load(filepath.Join(dir, "missing")); !errors.Is(err, policy.ErrRead) {
		t.Errorf("Load error = %v, want ErrRead", err)
	}
}

func TestVersionStableAcrossFileOrder(t *testing.T) {
	t.Parallel()
	a := policy.File{Name: "a.cedar", Content: []byte("permit (principal, action, resource);")}
	b := policy.File{Name: "b.cedar", Content: []byte("forbid (principal, action, resource);")}
	if policy.Version([]policy.File{a, b}) != policy.Version([]policy.File{b, a}) {
		t.Error("Version depends on file order")
	}
	b2 := b
	b2.Content = []byte("forbid (principal, action, resource) when { true };")
	if policy.Version([]policy.File{a, b}) == policy.Version([]policy.File{a, b2}) {
		t.Error("Version ignores content")
	}
}

func TestReloadKeepsLastGoodSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.cedar", `@id("allow-all") permit (principal, action, resource);`)
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	engine := newEngine(set)
	reloader := policy.NewReloader(engine, dir, time.Hour)
	good := set.Version()

	if changed, err := reloader.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v; want false, nil", changed, err)
	}

	write("b.cedar", `forbid (principal, action resource);`)
	if _, err := reloader.Reload(); !errors.Is(err, policy.ErrParse) {
		t.Fatalf("Reload of a bad file: error %v, want ErrParse", err)
	}
	st := engine.Status()
	if st.Set.Version() != good || st.LastError == nil || st.ReloadFailures != 1 {
		t.Errorf("after a bad reload: version %s, last error %v, failures %d; want %s, an error, 1",
			st.Set.Version(), st.LastError, st.ReloadFailures, good)
	}
	if d, err := engine.Evaluate(context.Background(), request()); err != nil || !d.Allow {
		t.Errorf("Evaluate after a bad reload = %v, %v; want the last good set to allow", d.Allow, err)
	}
	// The same bad content is reported once, not on every poll.
	if _, err := reloader.Reload(); err != nil || engine.Status().ReloadFailures != 1 {
		t.Errorf("second Reload of the same bad file: %v, failures %d", err, engine.Status().ReloadFailures)
	}

	write("b.cedar", `@id("no-mail") forbid (principal, action == Jitid::Action::"mail:send", resource);`)
	if changed, err := reloader.Reload(); !changed || err != nil {
		t.Fatalf("Reload of a fixed file = %v, %v; want true, nil", changed, err)
	}
	st = engine.Status()
	if st.Set.Version() == good || st.LastError != nil {
		t.Errorf("after a good reload: version %s (old %s), last error %v", st.Set.Version(), good, st.LastError)
	}
	if diff := cmp.Diff([]string{"allow-all", "no-mail"}, st.Set.PolicyIDs()); diff != "" {
		t.Errorf("PolicyIDs (-want +got):\n%s", diff)
	}
}

// @max_uses limits how many times a credential may be presented: the
// smallest limit of the permits that granted wins, and a denial has none.
func TestMaxUses(t *testing.T) {
	t.Parallel()
	set := compile(t, `
@id("read") @max_uses("10")
permit (principal, action == Jitid::Action::"tickets:read", resource);

@id("pay") @max_uses("1") @max_ttl("2m")
permit (principal, action == Jitid::Action::"payments:send", resource);

@id("list")
permit (principal, action == Jitid::Action::"tickets:list", resource);
`)
	engine := newEngine(set)
	tests := []struct {
		name   string
		scopes []string
		want   int32
	}{
		{name: "one limited scope", scopes: []string{"tickets:read"}, want: 10},
		{name: "the smallest limit wins", scopes: []string{"tickets:read", "payments:send"}, want: 1},
		{name: "unlimited scope", scopes: []string{"tickets:list"}, want: 0},
		{name: "limited and unlimited", scopes: []string{"tickets:list", "tickets:read"}, want: 10},
		{name: "denied", scopes: []string{"mail:send"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) { r.Scopes = tt.scopes }))
			if err != nil {
				t.Fatal(err)
			}
			if got.MaxUses != tt.want {
				t.Errorf("MaxUses = %d, want %d", got.MaxUses, tt.want)
			}
		})
	}
}
