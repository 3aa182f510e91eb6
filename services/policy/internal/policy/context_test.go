package policy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

// The three time rules issue 3 asks to be easy, written as an author would.
const timeRules = `
@id("all") permit (principal, action, resource);

@id("business-hours")
@reason("only 08:00-20:00 on weekdays, delegator's time")
forbid (principal, action, resource)
when { context.scope like "finance:*" }
unless {
  context has local &&
  context.local.time_of_day >= duration("8h") &&
  context.local.time_of_day < duration("20h") &&
  context.local.weekday_number <= 5
};

@id("fresh-authentication")
@reason("the delegator last authenticated over 15 minutes ago")
forbid (principal, action, resource)
unless { context has authentication_age && context.authentication_age <= duration("15m") };

@id("before-deadline")
@reason("the task deadline has passed")
forbid (principal, action, resource)
when { resource has deadline && context.time > resource.deadline };
`

func TestTimeRules(t *testing.T) {
	t.Parallel()
	engine := newEngine(compile(t, timeRules))
	// Wednesday 4 March 2026, 10:30 UTC: 19:30 in Tokyo, 05:30 in New York.
	fresh := testNow.Add(-5 * time.Minute)
	tests := []struct {
		name    string
		tz      string
		authAt  time.Time
		at      time.Time
		granted []string
	}{
		{"tokyo evening, in hours", "Asia/Tokyo", fresh, testNow, []string{"finance:pay", "mail:read"}},
		{"new york early morning", "America/New_York", fresh, testNow, []string{"mail:read"}},
		{"no time zone: finance fails closed", "", fresh, testNow, []string{"mail:read"}},
		{"tokyo saturday", "Asia/Tokyo", time.Date(2026, 3, 7, 1, 0, 0, 0, time.UTC).Add(-time.Minute), time.Date(2026, 3, 7, 1, 0, 0, 0, time.UTC), []string{"mail:read"}},
		{"stale authentication", "Asia/Tokyo", testNow.Add(-16 * time.Minute), testNow, nil},
		{"unknown authentication", "Asia/Tokyo", time.Time{}, testNow, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
				r.Scopes = []string{"finance:pay", "mail:read"}
				r.Delegator.TimeZone = tt.tz
				r.Delegator.AuthenticatedAt = tt.authAt
				r.Time = tt.at
			}))
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if diff := cmp.Diff(tt.granted, d.GrantedScopes); diff != "" {
				t.Errorf("granted (-want +got):\n%s\nreasons: %q", diff, d.Reasons)
			}
		})
	}
}

func TestDeadlineRuleInPolicy(t *testing.T) {
	t.Parallel()
	// The engine also refuses past the deadline on its own; the policy
	// forbid is what an author writes, and Explain shows it.
	engine := newEngine(compile(t, timeRules))
	d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.Delegator.AuthenticatedAt = testNow
		r.Task.Deadline = testNow.Add(-time.Minute)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Allow || !cmp.Equal(d.Policies, []string{"before-deadline"}) {
		t.Errorf("decision = allow %v, policies %v; want denied by before-deadline", d.Allow, d.Policies)
	}
}

func TestUnknownTimeZone(t *testing.T) {
	t.Parallel()
	_, err := defaultEngine(t).Evaluate(context.Background(), request(func(r *policy.Request) { r.Delegator.TimeZone = "Mars/Olympus" }))
	var fe *policy.FieldError
	if !errors.As(err, &fe) || fe.Field != "delegator.time_zone" {
		t.Errorf("Evaluate error = %v, want a FieldError on delegator.time_zone", err)
	}
}

func TestNarrowing(t *testing.T) {
	t.Parallel()
	engine := newEngine(compile(t, `@id("all") @max_ttl("10m") permit (principal, action, resource);`))
	chain := []policy.Agent{{ID: "planner"}, {ID: "orchestrator"}}
	tests := []struct {
		name         string
		entitlements []string
		chainScopes  [][]string
		granted      []string
		narrowedBy   []string
	}{
		{"nothing narrows", nil, nil, []string{"a", "b", "c"}, []string{"", "", ""}},
		{"entitlements", []string{"a", "b"}, nil, []string{"a", "b"}, []string{"", "", policy.NarrowedByEntitlements}},
		{"parent lacks c", nil, [][]string{{"a", "b"}, {"a", "b", "c"}}, []string{"a", "b"}, []string{"", "", policy.NarrowedByAgentChain}},
		{"grandparent lacks b", nil, [][]string{{"a", "b", "c"}, {"a", "c"}}, []string{"a", "c"}, []string{"", policy.NarrowedByAgentChain, ""}},
		{"both", []string{"a", "c"}, [][]string{{"a", "b"}, {"a", "b", "c"}}, []string{"a"}, []string{"", policy.NarrowedByEntitlements, policy.NarrowedByAgentChain}},
		{"parent holds nothing", nil, [][]string{{}, {"a"}}, nil, []string{policy.NarrowedByAgentChain, policy.NarrowedByAgentChain, policy.NarrowedByAgentChain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
				r.Scopes = []string{"a", "b", "c"}
				r.AgentChain = chain
				r.AgentChainScopes = tt.chainScopes
				r.Delegator.Entitlements = tt.entitlements
			}))
			if err != nil {
				t.Fatal(err)
			}
			var narrowed []string
			for _, s := range d.Scopes {
				narrowed = append(narrowed, s.NarrowedBy)
			}
			if diff := cmp.Diff(tt.granted, d.GrantedScopes); diff != "" {
				t.Errorf("granted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.narrowedBy, narrowed); diff != "" {
				t.Errorf("narrowed by (-want +got):\n%s", diff)
			}
		})
	}
	_, err := engine.Evaluate(context.Background(), request(func(r *policy.Request) {
		r.AgentChain = chain
		r.AgentChainScopes = [][]string{{"a"}}
	}))
	if !errors.Is(err, policy.ErrInvalidRequest) {
		t.Errorf("chain scopes of the wrong length: error = %v, want ErrInvalidRequest", err)
	}
}
