package grpcapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/access"
	"github.com/jitid/jitid/services/policy/internal/grpcapi"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/policymetrics"
	"github.com/jitid/jitid/services/policy/policies"
	"github.com/jitid/jitid/testkit/grpctest"
)

type testServer struct {
	client    policyv1.PolicyServiceClient
	health    healthpb.HealthClient
	adminAddr string
	version   string
}

// The callers of the tests: the issuer is an evaluator, the admin an admin,
// the platform neither. testCaller picks one per call (metadata
// x-test-caller); without it the caller is the issuer. Over a real mTLS
// connection the caller is the client certificate's SPIFFE ID (see app's
// tests); this authenticator stands in for that step only.
const (
	issuerID   = "spiffe://jitid.test/issuer"
	adminID    = "spiffe://jitid.test/admin"
	platformID = "spiffe://jitid.test/platform/support-bot"
)

func testAuthenticator(ctx context.Context) (context.Context, error) {
	caller := issuerID
	if v := metadata.ValueFromIncomingContext(ctx, "x-test-caller"); len(v) > 0 {
		caller = v[0]
	}
	return grpcserver.WithCaller(ctx, caller), nil
}

// as returns ctx calling as caller.
func as(caller string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "x-test-caller", caller)
}

var testRules = access.Rules{Evaluators: []string{issuerID}, Admins: []string{adminID}}

// start serves the default set on real sockets (127.0.0.1:0), with the
// test authenticator.
func start(t *testing.T) testServer {
	t.Helper()
	return startWith(t, testAuthenticator)
}

// startWith is start with authn as the server's authentication step (nil:
// none wired).
func startWith(t *testing.T, authn grpcserver.Authenticator) testServer {
	t.Helper()
	set, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine := policy.NewEngine(set, policy.EngineOptions{Logger: log})
	srv := grpcserver.New(grpcserver.Options{Name: "policy", GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: log, Authenticate: authn})
	if err := policymetrics.Register(srv.Registry(), engine); err != nil {
		t.Fatal(err)
	}
	grpcapi.New(engine, log, testRules).Register(srv.GRPC())
	conn := grpctest.Run(t, srv)
	return testServer{
		client:    policyv1.NewPolicyServiceClient(conn),
		health:    healthpb.NewHealthClient(conn),
		adminAddr: srv.AdminAddress(),
		version:   set.Version(),
	}
}

func evaluateRequest() *policyv1.EvaluateRequest {
	return &policyv1.EvaluateRequest{
		Agent: &identityv1.Agent{Id: "agent:research-7f3a", Class: identityv1.AgentClass_AGENT_CLASS_RECURRING},
		Delegator: &identityv1.Delegator{Id: "user:alice@example.com", Attributes: map[string]string{"age_verified": "true"},
			Entitlements: []string{"tickets:purchase", "tickets:read"}},
		Task:   &identityv1.Task{Id: "task-1", Purpose: "tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM},
		Scopes: []string{"tickets:purchase", "tickets:read"},
		Ttl:    durationpb.New(time.Hour),
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	ts := start(t)
	tests := []struct {
		name string
		mod  func(*policyv1.EvaluateRequest)
		want *identityv1.Decision
	}{
		{
			name: "medium recurring with purchase",
			want: &identityv1.Decision{
				Allow:         true,
				GrantedScopes: []string{"tickets:purchase", "tickets:read"},
				MaxTtl:        durationpb.New(15 * time.Minute),
				Profile:       identityv1.Profile_PROFILE_FULL,
				Obligations:   []string{"age_verified"},
				Policies:      []string{"medium-sensitivity", "recurring-full-profile", "tickets-purchase-age-verified"},
			},
		},
		{
			name: "critical denied",
			mod: func(r *policyv1.EvaluateRequest) {
				r.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_CRITICAL
				r.Scopes = []string{"tickets:read"}
			},
			want: &identityv1.Decision{
				Reasons:  []string{`scope "tickets:read": needs human approval`},
				Policies: []string{"critical-needs-human"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := evaluateRequest()
			if tt.mod != nil {
				tt.mod(req)
			}
			resp, err := ts.client.Evaluate(context.Background(), req)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			got := resp.GetDecision()
			if got.GetDecisionId() == "" || got.GetPolicyVersion() != ts.version {
				t.Errorf("decision id %q, version %q; want an id and %q", got.GetDecisionId(), got.GetPolicyVersion(), ts.version)
			}
			got = proto.CloneOf(got)
			got.DecisionId, got.PolicyVersion = "", ""
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvaluateInvalidArgument(t *testing.T) {
	t.Parallel()
	ts := start(t)
	tests := []struct {
		name string
		mod  func(*policyv1.EvaluateRequest)
	}{
		{"no agent", func(r *policyv1.EvaluateRequest) { r.Agent = nil }},
		{"no delegator id", func(r *policyv1.EvaluateRequest) { r.Delegator.Id = "" }},
		{"no task", func(r *policyv1.EvaluateRequest) { r.Task = nil }},
		{"unspecified sensitivity", func(r *policyv1.EvaluateRequest) { r.Task.Sensitivity = 0 }},
		{"unknown sensitivity", func(r *policyv1.EvaluateRequest) { r.Task.Sensitivity = 42 }},
		{"unknown class", func(r *policyv1.EvaluateRequest) { r.Agent.Class = 42 }},
		{"no scopes", func(r *policyv1.EvaluateRequest) { r.Scopes = nil }},
		{"no ttl", func(r *policyv1.EvaluateRequest) { r.Ttl = nil }},
		{"negative ttl", func(r *policyv1.EvaluateRequest) { r.Ttl = durationpb.New(-time.Minute) }},
		{"oversized task id", func(r *policyv1.EvaluateRequest) { r.Task.Id = strings.Repeat("x", 257) }},
		{"oversized purpose", func(r *policyv1.EvaluateRequest) { r.Task.Purpose = strings.Repeat("x", 1025) }},
		{"unknown time zone", func(r *policyv1.EvaluateRequest) { r.Delegator.TimeZone = "Europe/Atlantis" }},
		{"chain scopes without their agents", func(r *policyv1.EvaluateRequest) {
			r.AgentChainScopes = []*policyv1.HeldScopes{{Scopes: []string{"a"}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := evaluateRequest()
			tt.mod(req)
			_, err := ts.client.Evaluate(context.Background(), req)
			if got := status.Code(err); got != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
				t.Errorf("Evaluate code = %v, reason %q (%v), want InvalidArgument, %s", got, statusreason.Of(err), err, statusreason.InvalidRequest)
			}
			if len(statusreason.BadRequest(err)) == 0 {
				t.Errorf("Evaluate error %v carries no field violation", err)
			}
		})
	}
	t.Run("every violation reported", func(t *testing.T) {
		t.Parallel()
		req := evaluateRequest()
		req.Delegator.TimeZone = "Europe/Atlantis"
		req.Task.Id = ""
		req.Scopes = []string{"a b"}
		_, err := ts.client.Evaluate(context.Background(), req)
		got := map[string]bool{}
		for _, fv := range statusreason.BadRequest(err) {
			got[fv.GetField()] = true
		}
		for _, f := range []string{"delegator.time_zone", "task.id", "scopes[0]"} {
			if !got[f] {
				t.Errorf("Evaluate error %v lacks a violation of %s", err, f)
			}
		}
	})
	t.Run("explain without request", func(t *testing.T) {
		t.Parallel()
		_, err := ts.client.Explain(context.Background(), &policyv1.ExplainRequest{})
		if got := status.Code(err); got != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
			t.Errorf("Explain code = %v, reason %q, want InvalidArgument, %s", got, statusreason.Of(err), statusreason.InvalidRequest)
		}
	})
}

func TestExplain(t *testing.T) {
	t.Parallel()
	ts := start(t)
	req := evaluateRequest()
	req.Delegator.Attributes = nil
	resp, err := ts.client.Explain(context.Background(), &policyv1.ExplainRequest{Request: req})
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	// Every policy of the set is listed for every scope, in file order.
	type row struct {
		ID                   string
		Applied, Determining bool
		Why                  string
	}
	notHold := func(cond string) string { return "does not apply: " + cond + " does not hold" }
	const ageCond = `when { context.delegator.attributes has age_verified && context.delegator.attributes.age_verified == "true" && resource.sensitivity_level <= 3 }`
	want := map[string][]row{
		"tickets:purchase": {
			{"low-sensitivity", false, false, notHold(`when { resource.sensitivity == "LOW" }`)},
			{"medium-sensitivity", true, false, "applies, but a forbid overrides it"},
			{"high-sensitivity", false, false, notHold(`when { resource.sensitivity == "HIGH" }`)},
			{"critical-needs-human", false, false, notHold(`when { resource.sensitivity == "CRITICAL" }`)},
			{"tickets-purchase-needs-age-verified", true, true, "applies: forbids the scope (tickets:purchase needs a delegator whose age is verified)"},
			{"tickets-purchase-age-verified", false, false, notHold(ageCond)},
			{"ephemeral-minimal-profile", false, false, notHold(`when { principal.class == "EPHEMERAL" && resource.sensitivity_level <= 3 }`)},
			{"recurring-full-profile", true, false, "applies, but a forbid overrides it"},
		},
		"tickets:read": {
			{"low-sensitivity", false, false, notHold(`when { resource.sensitivity == "LOW" }`)},
			{"medium-sensitivity", true, true, "applies: permits the scope; TTL at most 15m0s"},
			{"high-sensitivity", false, false, notHold(`when { resource.sensitivity == "HIGH" }`)},
			{"critical-needs-human", false, false, notHold(`when { resource.sensitivity == "CRITICAL" }`)},
			{"tickets-purchase-needs-age-verified", false, false, `does not apply: action == Jitid::Action::"tickets:purchase" does not match`},
			{"tickets-purchase-age-verified", false, false, `does not apply: action == Jitid::Action::"tickets:purchase" does not match`},
			{"ephemeral-minimal-profile", false, false, notHold(`when { principal.class == "EPHEMERAL" && resource.sensitivity_level <= 3 }`)},
			{"recurring-full-profile", true, true, "applies: permits the scope; profile FULL"},
		},
	}
	got := map[string][]row{}
	for _, sc := range resp.GetScopes() {
		if sc.GetGranted() != (sc.GetScope() == "tickets:read") {
			t.Errorf("scope %q granted = %v", sc.GetScope(), sc.GetGranted())
		}
		for _, p := range sc.GetPolicies() {
			got[sc.GetScope()] = append(got[sc.GetScope()], row{p.GetPolicyId(), p.GetApplied(), p.GetDetermining(), p.GetExplanation()})
			if !strings.HasPrefix(p.GetPosition(), "default.cedar:") {
				t.Errorf("policy %q position = %q, want default.cedar:line:col", p.GetPolicyId(), p.GetPosition())
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explanations (-want +got):\n%s", diff)
	}
}

func TestGetPolicySetHealthAndMetrics(t *testing.T) {
	t.Parallel()
	ts := start(t)
	ctx := context.Background()
	hc, err := ts.health.Check(ctx, &healthpb.HealthCheckRequest{Service: policyv1.PolicyService_ServiceDesc.ServiceName})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", hc.GetStatus(), err)
	}
	ps, err := ts.client.GetPolicySet(ctx, &policyv1.GetPolicySetRequest{})
	if err != nil {
		t.Fatalf("GetPolicySet: %v", err)
	}
	if ps.GetVersion() != ts.version || ps.GetSource() != policies.Source || len(ps.GetPolicyIds()) != 8 || ps.GetLastError() != "" {
		t.Errorf("GetPolicySet = %v", ps)
	}
	resp, err := http.Get("http://" + ts.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	wantLine := `jitid_policy_set_info{source="` + policies.Source + `",version="` + ts.version + `"} 1`
	if !strings.Contains(string(body), wantLine) {
		t.Errorf("/metrics lacks %s", wantLine)
	}
}
