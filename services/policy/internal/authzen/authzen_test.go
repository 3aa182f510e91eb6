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
	srv := httptest.NewServer(authzen.New(engine, nil))
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
			        "context": {"delegator": {"id": "carol", "attributes": {"age_verified": "true"}}, "ttl": "30m"}}`,
			code: 200, decision: true,
			context: map[string]any{"id": "d-1", "max_ttl": "30m0s", "profile": "MINIMAL", "obligations": []any{"age_verified"},
				"policies": []any{"ephemeral-minimal-profile", "low-sensitivity", "tickets-purchase-age-verified"}},
		},
		{
			name: "deny with reason",
			body: `{"subject": {"type": "agent", "id": "agent-1"}, "action": {"name": "prod:delete"},
			        "resource": {"type": "task", "id": "t-2", "properties": {"sensitivity": "CRITICAL"}},
			        "context": {"delegator": {"id": "bob"}, "ttl": 300}}`,
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
	if md["access_evaluation_endpoint"] != srv.URL+authzen.EvaluationPath {
		t.Errorf("metadata = %v", md)
	}
}
