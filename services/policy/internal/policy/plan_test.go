package policy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/policies"
)

// planShapes has a policy of every shape the evaluation plan sorts:
// action-independent, head naming one action (==, in, in a set, the same
// action twice), conditions reading the action, context.scope, `context has
// scope`, and policies that fail to evaluate once per request or per scope.
const planShapes = `
@id("everything-low") @max_ttl("20m")
permit (principal, action, resource) when { resource.sensitivity_level <= 1 };

@id("in-one") @max_ttl("7m")
permit (principal, action in Jitid::Action::"a:x", resource) when { context.scope like "a:*" };

@id("has-scope") @profile("FULL")
permit (principal, action, resource) when { context has scope && context.scope == "b:y" };

@id("action-in-condition") @obligation("mfa_recent")
permit (principal, action, resource) when { action == Jitid::Action::"c:z" };

@id("action-set-in-condition") @reason("no d:w above LOW")
forbid (principal, action, resource)
when { action in [Jitid::Action::"d:w", Jitid::Action::"d:v"] && resource.sensitivity_level > 1 };

@id("twice")
permit (principal, action in [Jitid::Action::"e:v", Jitid::Action::"e:v", Jitid::Action::"a:x"], resource);

@id("fails-for-high") @reason("overflows")
forbid (principal, action, resource)
when { resource.sensitivity == "HIGH" && context.ttl_seconds * 9223372036854775807 > 0 };

@id("fails-for-f")
forbid (principal, action == Jitid::Action::"f:u", resource)
when { context.ttl_seconds * 9223372036854775807 > 0 };

@id("permit-fails")
permit (principal, action, resource)
when { context.scope like "g:*" && context.ttl_seconds * 9223372036854775807 > 0 };

@id("chain-only")
permit (principal in Jitid::Agent::"parent-1", action, resource) when { context.hour >= 0 };

@id("has-deadline-only")
permit (principal, action == Jitid::Action::"h:1", resource) when { resource has deadline };

@id("has-authentication-only") @reason("not authenticated")
forbid (principal, action == Jitid::Action::"h:2", resource) unless { context has authentication_age };

@id("eq-guard") @max_ttl("3m")
permit (principal, action, resource) when { "k:1" == context.scope && resource.sensitivity_level <= 2 };

@id("like-guard-unless") @reason("k needs authentication")
forbid (principal, action, resource) when { context.scope like "k:*" } unless { context has authentication_age };

// A one-letter guard prefix; "mail:send" and "metrics:read" pass it.
@id("one-letter-guard") @max_ttl("4m")
permit (principal, action, resource) when { context.scope like "m*" && resource.sensitivity_level == 2 };

// The guard is not first: the failing unless runs for every scope.
@id("guard-after-unless")
permit (principal, action, resource)
unless { context.ttl_seconds * 9223372036854775807 > 0 } when { context.scope like "l:*" };

@id("deadline-forbid") @reason("too late")
forbid (principal, action, resource)
when { resource has deadline && context.time > resource.deadline };
`

// TestPlanMatchesFullEvaluation decides many random requests against the
// default set, every example set and sets of every policy shape, once with
// the evaluation plan (scope-independent policies once per request, action
// heads indexed) and once with one Cedar call per scope over the whole set,
// and wants the same decisions, down to each scope's deciding policies and
// errors.
func TestPlanMatchesFullEvaluation(t *testing.T) {
	t.Parallel()
	sets := map[string]*policy.Set{}
	def, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatal(err)
	}
	sets["default"] = def
	dirs, err := filepath.Glob("../../../../examples/policies/*")
	if err != nil || len(dirs) < 4 {
		t.Fatalf("example sets: %v %v", dirs, err)
	}
	for _, dir := range dirs {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			continue
		}
		set, err := policy.Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		sets[filepath.Base(dir)] = set
	}
	sets["shapes"] = compile(t, planShapes)
	sets["generated200"] = generatedSet(t, 200)
	sets["time-rules"] = compile(t, timeRules)

	scopes := []string{
		"tickets:read", "tickets:search", "tickets:purchase", "payments:spend:up-to-100",
		"payments:spend:up-to-500", "finance:pay", "finance:read", "metrics:read", "reports:read",
		"reports:write", "calendar:write", "docs:search", "mail:send", "a:x", "a:y", "b:y", "c:z",
		"d:w", "d:v", "e:v", "f:u", "g:1", "svc0:read", "svc3:write", "svc4:read", "svc7:write",
		"team1:x", "team5:y", "night:shift", "h:1", "h:2", "k:1", "k:2", "l:1",
	}
	zones := []string{"", "Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"}
	const perSet = 400
	for name, set := range sets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			for i := range perSet {
				req := randomRequest(rng, scopes, zones)
				now := req.Time
				if err := req.Validate(); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				planned, full := policy.DecideBothWays(set, req, now)
				if diff := cmp.Diff(full, planned); diff != "" {
					t.Fatalf("request %d %+v: plan differs from full evaluation (-full +planned):\n%s", i, req, diff)
				}
			}
		})
	}
}

// TestPlanSizes pins how the plan sorts the default set and the shapes set:
// a policy moved to "every scope" would be correct but slower.
func TestPlanSizes(t *testing.T) {
	t.Parallel()
	def, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                    string
		set                     *policy.Set
		once, everyScope, named int
	}{
		// tickets-purchase-* name their action; the rest read neither
		// the action nor context.scope.
		{"default", def, 6, 0, 2},
		// everything-low, fails-for-high, chain-only and deadline-forbid
		// run once; has-scope, action-in-condition, action-set-in-condition
		// and permit-fails read the scope or the action.
		{"shapes", compile(t, planShapes), 4, 8, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			once, every, named := policy.PlanSizes(tt.set)
			if once != tt.once || every != tt.everyScope || named != tt.named {
				t.Errorf("plan = %d once, %d every scope, %d named; want %d, %d, %d", once, every, named, tt.once, tt.everyScope, tt.named)
			}
		})
	}
}

func randomRequest(rng *rand.Rand, scopes, zones []string) policy.Request {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	r := policy.Request{
		Agent: policy.Agent{
			ID:       fmt.Sprintf("agent-%d", rng.IntN(3)),
			Class:    policy.AgentClass(rng.IntN(3)),
			Platform: pick([]string{"", "reporting", "langgraph"}),
		},
		Delegator: policy.Delegator{ID: "user:alice"},
		Task: policy.Task{
			ID:          "task-1",
			Purpose:     "p",
			Sensitivity: policy.Sensitivity(1 + rng.IntN(4)),
		},
		TTL:      time.Duration(1+rng.IntN(7200)) * time.Second,
		Time:     time.Date(2026, 3, 1+rng.IntN(14), rng.IntN(24), rng.IntN(60), 0, 0, time.UTC),
		Audience: pick([]string{"", "https://api.example.com"}),
		Platform: pick([]string{"", "spiffe://acme.example/platform/support-bot", "spiffe://acme.example/platform/finance-batch"}),
	}
	r.DelegatorAsserted = rng.IntN(8) == 0
	if rng.IntN(2) == 0 {
		r.Agent.Attributes = map[string]string{"purpose": pick([]string{"research", "travel"}), "team": "t1"}
	}
	if rng.IntN(3) > 0 {
		r.Delegator.Attributes = map[string]string{
			"age_verified":  pick([]string{"true", "false"}),
			"spending_tier": pick([]string{"high", "low"}),
		}
	}
	r.Delegator.TimeZone = pick(zones)
	if rng.IntN(3) > 0 {
		r.Delegator.AuthenticatedAt = r.Time.Add(-time.Duration(rng.IntN(48*60)) * time.Minute)
	}
	if rng.IntN(3) == 0 {
		r.Task.Deadline = r.Time.Add(time.Duration(rng.IntN(240)-60) * time.Minute)
	}
	n := 1 + rng.IntN(6)
	for range n {
		r.Scopes = append(r.Scopes, pick(scopes))
	}
	switch rng.IntN(6) {
	case 0:
		r.Delegator.Entitlements = []string{pick(scopes), pick(scopes), pick(scopes)}
	case 1:
		// None given: none held.
	default:
		r.Delegator.Entitlements = scopes
	}
	if rng.IntN(4) == 0 {
		r.AgentChain = []policy.Agent{{ID: "parent-1", Class: policy.AgentClassRecurring}, {ID: "root"}}
		if rng.IntN(2) == 0 {
			r.AgentChainScopes = [][]string{{pick(scopes), pick(scopes)}, scopes}
		}
	}
	return r
}

// TestConcurrentEvaluate decides the same requests from many goroutines at
// once, Explain among them, and wants the sequential answers: evaluation
// reuses pooled buffers, which must never leak between requests.
func TestConcurrentEvaluate(t *testing.T) {
	t.Parallel()
	set, err := policy.Load("../../../../examples/policies/tickets")
	if err != nil {
		t.Fatal(err)
	}
	engine := newEngine(set)
	rng := rand.New(rand.NewPCG(7, 7))
	scopes := []string{"tickets:read", "tickets:search", "tickets:purchase", "payments:spend:up-to-100", "payments:spend:up-to-500", "mail:send"}
	reqs := make([]policy.Request, 200)
	want := make([]policy.Decision, len(reqs))
	ctx := context.Background()
	for i := range reqs {
		reqs[i] = randomRequest(rng, scopes, []string{"", "Europe/Paris"})
		if want[i], err = engine.Evaluate(ctx, reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range reqs {
				i := (k*7 + g*31) % len(reqs)
				var got policy.Decision
				var err error
				if g%4 == 0 {
					ex, err := engine.Explain(ctx, reqs[i])
					if err != nil {
						errs <- err.Error()
						return
					}
					got = ex.Decision
				} else if got, err = engine.Evaluate(ctx, reqs[i]); err != nil {
					errs <- err.Error()
					return
				}
				if diff := cmp.Diff(want[i], got); diff != "" {
					errs <- fmt.Sprintf("goroutine %d, request %d (-sequential +concurrent):\n%s", g, i, diff)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
