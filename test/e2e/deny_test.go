package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// TestDeniedRequest proves that what the default policy forbids is refused
// with PERMISSION_DENIED and its reasons, audited as denied, and leaves no
// credential behind.
func TestDeniedRequest(t *testing.T) {
	t.Parallel()
	s, idp := delegatorStack(t, stackOptions{})

	tests := []struct {
		name   string
		modify func(*issuerv1.IssueCredentialRequest)
	}{
		{
			name:   "critical task needs human approval",
			modify: func(r *issuerv1.IssueCredentialRequest) { r.Task.Sensitivity = critical },
		},
		{
			name:   "tickets:purchase without age_verified",
			modify: func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{"tickets:purchase"} },
		},
		{
			name: "tickets:purchase with age_verified false",
			modify: func(r *issuerv1.IssueCredentialRequest) {
				r.Scopes = []string{"tickets:purchase"}
				r.Delegator.Attributes = map[string]string{"age_verified": "false"}
			},
		},
	}
	t.Run("denials", func(t *testing.T) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Sequential: the subtests are quick, and parallel ones would wait
				// for the -parallel slots (GOMAXPROCS) the long tests hold.
				p := s.party(fmt.Sprintf("deny%d", i))
				req := p.request()
				tt.modify(req)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := s.issuer.IssueCredential(ctx, req)
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("IssueCredential = %v, %v; want PERMISSION_DENIED", resp, err)
				}
				st := status.Convert(err)
				if strings.TrimSpace(st.Message()) == "" {
					t.Errorf("PERMISSION_DENIED carries no message; want the policy's reasons")
				}

				var recs []*auditv1.AuditRecord
				waitFor(t, 15*time.Second, "the denied event in the audit log", func() bool {
					recs = s.eventsNow(&auditv1.EventFilter{TaskId: p.task, Types: []eventsv1.EventType{evDenied}})
					return len(recs) > 0
				})
				if len(recs) != 1 {
					t.Errorf("denied events for task %s: %d; want 1", p.task, len(recs))
				}
				ev := recs[0].GetEvent()
				if ev.GetAgent().GetId() != p.agent || ev.GetDelegator().GetId() != p.delegator || ev.GetTask().GetId() != p.task {
					t.Errorf("denied event names agent %q, delegator %q, task %q; want %q, %q, %q",
						ev.GetAgent().GetId(), ev.GetDelegator().GetId(), ev.GetTask().GetId(), p.agent, p.delegator, p.task)
				}
				if ev.GetCredentialId() != "" {
					t.Errorf("denied event names credential %q; a denial has none", ev.GetCredentialId())
				}
				if diff := cmp.Diff(req.GetScopes(), ev.GetScopes()); diff != "" {
					t.Errorf("denied event scopes (want the requested; -want +got):\n%s", diff)
				}
				d := ev.GetDecision()
				if d.GetAllow() || len(d.GetReasons()) == 0 {
					t.Fatalf("denied event decision = %v; want allow=false with reasons", d)
				}
				// The caller is told why: the decision's reasons travel in the
				// status (message or details).
				told := st.Message()
				for _, det := range st.Details() {
					if m, ok := det.(proto.Message); ok {
						b, _ := protojson.Marshal(m)
						told += " " + string(b)
					}
				}
				for _, reason := range d.GetReasons() {
					if !strings.Contains(told, reason) {
						t.Errorf("PERMISSION_DENIED status %q does not carry the reason %q", told, reason)
					}
				}
				// No credential for this agent anywhere in Redis.
				ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel2()
				list, err := s.issuer.ListCredentials(ctx2, &issuerv1.ListCredentialsRequest{Selector: &issuerv1.ListCredentialsRequest_AgentId{AgentId: p.agent}})
				if err != nil {
					t.Errorf("ListCredentials(agent): %v", err)
				} else if len(list.GetCredentials()) != 0 {
					t.Errorf("ListCredentials(agent) after a denial = %v; want none", list.GetCredentials())
				}
			})
		}
	})
	// After every denial: not one credential key was written.
	if keys := s.credKeys(t, "*"); len(keys) != 0 {
		t.Errorf("credential keys after denials only: %v; want none", keys)
	}

	// The positive side of the age rule: with the attribute, proven by
	// the delegator's token, the same request is granted, so the denial is
	// the rule's doing and not a blanket refusal.
	idToken, _ := idp.tokens(t, "alice")
	req := tokenRequest(s.party("buy"), idToken, typeIDToken)
	req.Scopes = []string{"tickets:purchase"}
	cred := s.issue(t, req)
	if diff := cmp.Diff([]string{"tickets:purchase"}, cred.GetScopes()); diff != "" {
		t.Errorf("granted scopes (-want +got):\n%s", diff)
	}
	// A recurring agent with the same request gets the FULL profile, an
	// ephemeral one MINIMAL.
	if cred.GetProfile() != identityv1.Profile_PROFILE_MINIMAL {
		t.Errorf("ephemeral agent profile = %v; want MINIMAL", cred.GetProfile())
	}
	rp := s.party("buy-recurring")
	rreq := rp.request()
	rreq.Agent.Class = recurring
	if c := s.issue(t, rreq); c.GetProfile() != identityv1.Profile_PROFILE_FULL {
		t.Errorf("recurring agent profile = %v; want FULL", c.GetProfile())
	}
}

// TestInvalidArgument proves that malformed requests are refused with
// INVALID_ARGUMENT before anything is decided or written.
func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	tests := []struct {
		name   string
		modify func(*issuerv1.IssueCredentialRequest)
	}{
		{"missing agent", func(r *issuerv1.IssueCredentialRequest) { r.Agent = nil }},
		{"missing agent id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "" }},
		{"missing delegator id", func(r *issuerv1.IssueCredentialRequest) { r.Delegator.Id = "" }},
		{"missing task id", func(r *issuerv1.IssueCredentialRequest) { r.Task.Id = "" }},
		{"missing ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = nil }},
		{"ttl 0", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = durationpb.New(0) }},
		{"negative ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = durationpb.New(-time.Minute) }},
		{"empty scopes", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = nil }},
		{"blank scope", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = []string{" "} }},
		{"unknown sensitivity", func(r *issuerv1.IssueCredentialRequest) { r.Task.Sensitivity = identityv1.Sensitivity(99) }},
		{"unknown agent class", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Class = identityv1.AgentClass(42) }},
		{"oversized task purpose", func(r *issuerv1.IssueCredentialRequest) { r.Task.Purpose = strings.Repeat("x", 1025) }},
		{"oversized agent id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "agent:" + strings.Repeat("a", 257) }},
	}
	t.Run("requests", func(t *testing.T) {
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Sequential: the subtests are quick, and parallel ones would wait
				// for the -parallel slots (GOMAXPROCS) the long tests hold.
				req := s.party(fmt.Sprintf("bad%d", i)).request()
				tt.modify(req)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := s.issuer.IssueCredential(ctx, req)
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("IssueCredential = %v, %v; want INVALID_ARGUMENT", resp.GetCredential().GetId(), err)
				}
			})
		}
	})
	if keys := s.credKeys(t, "*"); len(keys) != 0 {
		t.Errorf("credential keys after invalid requests only: %v; want none", keys)
	}
	// Nothing reached the audit log either: a valid request made after all
	// of them is the only record there, once its event has arrived.
	s.expectOnlyIssued(t, []*issuedCred{s.issue(t, s.party("valid").request())})
}
