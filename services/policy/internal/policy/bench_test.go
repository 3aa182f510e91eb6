package policy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/services/policy/internal/policy"
)

// generatedSet is a set of n policies of the shapes real sets have: per-scope
// permits with a TTL cap, sensitivity guards, attribute checks and a few
// time and authentication forbids.
func generatedSet(b testing.TB, n int) *policy.Set {
	b.Helper()
	var src strings.Builder
	for i := range n {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&src, "@id(\"p%d\") @max_ttl(\"%dm\")\npermit (principal, action == Jitid::Action::\"svc%d:read\", resource is Jitid::Task)\nwhen { resource.sensitivity_level <= %d };\n", i, 5+i%50, i, 1+i%3)
		case 1:
			fmt.Fprintf(&src, "@id(\"p%d\")\npermit (principal is Jitid::Agent, action, resource)\nwhen { context.scope like \"team%d:*\" && principal.attributes has team && principal.attributes.team == \"t%d\" };\n", i, i, i)
		case 2:
			fmt.Fprintf(&src, "@id(\"p%d\") @reason(\"r%d\")\nforbid (principal, action, resource)\nwhen { context.scope like \"svc%d:*\" && context.hour >= %d };\n", i, i, i-2, 12+i%12)
		case 3:
			fmt.Fprintf(&src, "@id(\"p%d\") @reason(\"r%d\")\nforbid (principal, action == Jitid::Action::\"svc%d:write\", resource)\nunless { context has authentication_age && context.authentication_age <= duration(\"15m\") };\n", i, i, i)
		}
	}
	set, err := policy.Compile("generated", []policy.File{{Name: "gen.cedar", Path: "gen.cedar", Content: []byte(src.String())}})
	if err != nil {
		b.Fatal(err)
	}
	return set
}

func benchRequest() policy.Request {
	return request(func(r *policy.Request) {
		r.Scopes = []string{"tickets:read", "tickets:purchase", "calendar:write"}
		r.Agent.Attributes = map[string]string{"model": "m1", "team": "travel"}
		r.Delegator.TimeZone = "Europe/Paris"
		r.Delegator.AuthenticatedAt = testNow.Add(-5 * time.Minute)
	})
}

func benchmarkEvaluate(b *testing.B, engine *policy.Engine, req policy.Request) {
	ctx := context.Background()
	b.ReportAllocs()
	start := processCPU()
	for b.Loop() {
		if _, err := engine.Evaluate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	if cpu := processCPU() - start; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkEvaluateDefault decides three scopes (one forbidden) against the
// default set, with every optional context field present.
func BenchmarkEvaluateDefault(b *testing.B) {
	benchmarkEvaluate(b, defaultEngine(b), benchRequest())
}

// BenchmarkEvaluate200 decides the same request against 200 policies.
func BenchmarkEvaluate200(b *testing.B) {
	benchmarkEvaluate(b, newEngine(generatedSet(b, 200)), benchRequest())
}

// BenchmarkEvaluate200Matching decides three scopes that the generated
// policies name (a permit by action, a permit by context.scope pattern and
// an attribute, and a scope with only a forbid by action), so that the
// policies run rather than being skipped by the plan.
func BenchmarkEvaluate200Matching(b *testing.B) {
	req := benchRequest()
	req.Scopes = []string{"svc0:read", "team1:x", "svc3:write"}
	req.Delegator.Entitlements = req.Scopes
	req.Agent.Attributes = map[string]string{"model": "m1", "team": "t1"}
	benchmarkEvaluate(b, newEngine(generatedSet(b, 200)), req)
}

// BenchmarkCompile200 is the cost of one load (parse, validate, index).
func BenchmarkCompile200(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		generatedSet(b, 200)
	}
}

// BenchmarkEvaluateDefaultPlain is BenchmarkEvaluateDefault without a time
// zone or authentication time: the context the issuer sends when it knows
// neither.
func BenchmarkEvaluateDefaultPlain(b *testing.B) {
	req := benchRequest()
	req.Delegator.TimeZone, req.Delegator.AuthenticatedAt = "", time.Time{}
	benchmarkEvaluate(b, defaultEngine(b), req)
}
