package authzen_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/policy/internal/access"
	"github.com/jitid/jitid/services/policy/internal/authzen"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/policies"
)

func start(t *testing.T) *httptest.Server {
	t.Helper()
	set, err := policy.LoadFS(policies.Default(), policies.Source)
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewEngine(set, policy.EngineOptions{
		Clock:         func() time.Time { return time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC) },
		NewDecisionID: func() (string, error) { return "d-1", nil },
	})
	// The caller is the issuer, an evaluator; app's tests authenticate it
	// from a real client certificate.
	const issuer = "spiffe://jitid.test/issuer"
	srv := httptest.NewServer(authzen.New(engine, nil, authzen.Options{
		Rules:  access.Rules{Evaluators: []string{issuer}},
		Caller: func(*http.Request) (string, bool) { return issuer, true },
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestEvaluation(t *testing.T) {
	t.Parallel()
	srv := start(t)
	tests := []struct {
		name     string
		body     string
		code     int
		decision bool
		context  map[string]any
	}{
		{
			name: "permit with obligation",
			body: `{"subject": {"type": "agent", "id": "agent-1", "properties": {"class": "EPHEMERAL"}},
			        "action": {"name": "tickets:purchase"},
			        "resource": {"type": "task", "id": "t-1", "properties": {"sensitivity": "LOW"}},
			        "context": {"delegator": {"id": "carol", "attributes": {"age_verified": "true"}, "entitlements": ["tickets:read", "tickets:purchase", "tickets:search"]}, "ttl": "30m"}}`,
			code: 200, decision: true,
			context: map[string]any{"id": "d-1", "max_ttl": "30m0s", "profile": "MINIMAL", "obligations": []any{"age_verified"},
				"policies": []any{"ephemeral-minimal-profile", "low-sensitivity", "tickets-purchase-age-verified"}},
		},
		{
			name: "deny with reason",
			body: `{"subject": {"type": "agent", "id": "agent-1"}, "action": {"name": "prod:delete"},
			        "resource": {"type": "task", "id": "t-2", "properties": {"sensitivity": "CRITICAL"}},
			        "context": {"delegator": {"id": "bob", "entitlements": ["prod:delete"]}, "ttl": 300}}`,
			code: 200, decision: false,
			context: map[string]any{"id": "d-1", "policies": []any{"critical-needs-human"},
				"reasons":      []any{`scope "prod:delete": needs human approval`},
				"reason_admin": map[string]any{"en": `scope "prod:delete": needs human approval`},
				"reason_user":  map[string]any{"en": `scope "prod:delete": needs human approval`}},
		},
		{name: "wrong subject type", body: `{"subject": {"type": "user", "id": "x"}, "action": {"name": "a"}, "resource": {"type": "task", "id": "t", "properties": {"sensitivity": "LOW"}}}`, code: 400},
		{name: "missing delegator", body: `{"subject": {"type": "agent", "id": "x"}, "action": {"name": "a"}, "resource": {"type": "task", "id": "t", "properties": {"sensitivity": "LOW"}}}`, code: 400},
		{name: "not json", body: `{`, code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+authzen.EvaluationPath, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-ID", "req-42")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			if got := resp.Header.Get("X-Request-ID"); got != "req-42" {
				t.Errorf("X-Request-ID = %q, want it echoed", got)
			}
			if tt.code != 200 {
				return
			}
			var got struct {
				Decision bool           `json:"decision"`
				Context  map[string]any `json:"context"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			delete(got.Context, "policy_version")
			if got.Decision != tt.decision {
				t.Errorf("decision = %v, want %v", got.Decision, tt.decision)
			}
			if diff := cmp.Diff(tt.context, got.Context); diff != "" {
				t.Errorf("context (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	srv := start(t)
	resp, err := http.Get(srv.URL + authzen.MetadataPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if md["access_evaluation_endpoint"] != srv.URL+authzen.EvaluationPath || md["access_evaluations_endpoint"] != srv.URL+authzen.EvaluationsPath {
		t.Errorf("metadata = %v", md)
	}
}

// TestEvaluations covers the batch endpoint (AuthZEN 1.0 §7): defaults and
// per-evaluation overrides, the three semantics, an invalid evaluation as a
// deny with an error, the single-evaluation form, and bad batches.
func TestEvaluations(t *testing.T) {
	t.Parallel()
	srv := start(t)
	const defaults = `"subject": {"type": "agent", "id": "agent-1", "properties": {"class": "EPHEMERAL"}},
	  "resource": {"type": "task", "id": "t-1", "properties": {"sensitivity": "LOW"}},
	  "context": {"delegator": {"id": "carol", "attributes": {"age_verified": "false"}, "entitlements": ["tickets:read", "tickets:purchase", "tickets:search"]}, "ttl": "10m"}`
	const mixed = `[
	  {"action": {"name": "tickets:read"}},
	  {"action": {"name": "tickets:purchase"}},
	  {"action": {"name": "prod:delete"}, "resource": {"type": "task", "id": "t-2", "properties": {"sensitivity": "CRITICAL"}}},
	  {"action": {"name": "tickets:read"}, "subject": {"type": "user", "id": "bob"}},
	  {"action": {"name": "tickets:purchase"}, "context": {"delegator": {"id": "carol", "attributes": {"age_verified": "true"}, "entitlements": ["tickets:read", "tickets:purchase", "tickets:search"]}}}
	]`
	type result struct {
		Decision    bool
		ErrorStatus int
		MaxTTL      string
	}
	tests := []struct {
		name string
		body string
		code int
		want []result
	}{
		{
			name: "execute all",
			body: `{` + defaults + `, "evaluations": ` + mixed + `}`,
			code: 200,
			want: []result{{true, 0, "10m0s"}, {false, 0, ""}, {false, 0, ""}, {false, 400, ""}, {true, 0, "1h0m0s"}},
		},
		{
			name: "deny on first deny",
			body: `{` + defaults + `, "options": {"evaluations_semantic": "deny_on_first_deny"}, "evaluations": ` + mixed + `}`,
			code: 200,
			want: []result{{true, 0, "10m0s"}, {false, 0, ""}},
		},
		{
			name: "permit on first permit",
			body: `{` + defaults + `, "options": {"evaluations_semantic": "permit_on_first_permit"}, "evaluations": [
			  {"action": {"name": "tickets:purchase"}}, {"action": {"name": "tickets:read"}}, {"action": {"name": "tickets:search"}}]}`,
			code: 200,
			want: []result{{false, 0, ""}, {true, 0, "10m0s"}},
		},
		{
			name: "an invalid evaluation is a deny",
			body: `{` + defaults + `, "options": {"evaluations_semantic": "deny_on_first_deny"}, "evaluations": [
			  {"action": {"name": ""}}, {"action": {"name": "tickets:read"}}]}`,
			code: 200,
			want: []result{{false, 400, ""}},
		},
		{
			name: "bad semantic",
			body: `{` + defaults + `, "options": {"evaluations_semantic": "some"}, "evaluations": [{"action": {"name": "a"}}]}`,
			code: 400,
		},
		{
			name: "too many",
			body: `{` + defaults + `, "evaluations": [` + strings.Repeat(`{"action": {"name": "a"}},`, authzen.MaxEvaluations) + `{"action": {"name": "a"}}]}`,
			code: 400,
		},
		{name: "not json", body: `{"evaluations": [`, code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := http.Post(srv.URL+authzen.EvaluationsPath, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.code {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, b)
			}
			if tt.code != 200 {
				return
			}
			var got authzen.EvaluationsResponse
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			var results []result
			for _, e := range got.Evaluations {
				r := result{Decision: e.Decision, MaxTTL: e.Context.MaxTTL}
				if e.Context.Error != nil {
					r.ErrorStatus = e.Context.Error.Status
				}
				results = append(results, r)
			}
			if diff := cmp.Diff(tt.want, results); diff != "" {
				t.Errorf("evaluations (-want +got):\n%s", diff)
			}
		})
	}

	// Without evaluations, the request is one evaluation and so is the answer.
	resp, err := http.Post(srv.URL+authzen.EvaluationsPath, "application/json",
		strings.NewReader(`{`+defaults+`, "action": {"name": "tickets:read"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var single authzen.EvaluationResponse
	if err := json.NewDecoder(resp.Body).Decode(&single); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !single.Decision || single.Context.MaxTTL != "10m0s" {
		t.Errorf("single form: %d %+v, want 200 and a permit for 10m", resp.StatusCode, single)
	}
}
