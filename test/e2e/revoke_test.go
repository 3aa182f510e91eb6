package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// TestRevoke proves that revoking by task, agent or delegator makes every
// matching credential inactive at once, records one revoked event per
// credential, leaves nothing of them in Redis, and touches nothing else.
func TestRevoke(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})

	tests := []struct {
		name string
		// issue returns the credentials the selector must revoke and one
		// that it must leave alone.
		issue    func(t *testing.T, p party) (revoked []*issuedCred, kept *issuedCred)
		selector func(p party) *issuerv1.RevokeCredentialsRequest
	}{
		{
			name: "by task",
			issue: func(t *testing.T, p party) ([]*issuedCred, *issuedCred) {
				a := s.issue(t, p.request())
				other := p.request()
				other.Agent.Id += "-2"
				b := s.issue(t, other)
				control := p.request()
				control.Task.Id += "-other"
				return []*issuedCred{a, b}, s.issue(t, control)
			},
			selector: func(p party) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_TaskId{TaskId: p.task}, Reason: "e2e: task cancelled"}
			},
		},
		{
			// Several tasks, so the agent's credentials sit on several
			// shards and the index has to be walked shard by shard.
			name: "by agent",
			issue: func(t *testing.T, p party) ([]*issuedCred, *issuedCred) {
				var creds []*issuedCred
				for _, task := range []string{"-t1", "-t2", "-t3", "-t4"} {
					r := p.request()
					r.Task.Id += task
					creds = append(creds, s.issue(t, r))
				}
				control := p.request()
				control.Agent.Id += "-other"
				control.Task.Id += "-t1"
				return creds, s.issue(t, control)
			},
			selector: func(p party) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_AgentId{AgentId: p.agent}, Reason: "e2e: agent compromised"}
			},
		},
		{
			name: "by delegator",
			issue: func(t *testing.T, p party) ([]*issuedCred, *issuedCred) {
				var creds []*issuedCred
				for _, suffix := range []string{"-1", "-2", "-3", "-4"} {
					r := p.request()
					r.Task.Id += suffix
					r.Agent.Id += suffix
					creds = append(creds, s.issue(t, r))
				}
				control := p.request()
				control.Delegator.Id = "user:" + s.ns + "-bystander@example.com"
				control.Task.Id += "-1"
				return creds, s.issue(t, control)
			},
			selector: func(p party) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: p.delegator}, Reason: "e2e: delegator left"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sequential: the subtests are quick, and parallel ones would wait
			// for the -parallel slots (GOMAXPROCS) the long tests hold.
			p := s.party("revoke-" + tt.name[3:])
			revoked, kept := tt.issue(t, p)
			ids := credIDs(revoked...)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := s.issuer.RevokeCredentials(ctx, tt.selector(p))
			if err != nil {
				t.Fatalf("RevokeCredentials: %v", err)
			}
			if resp.GetRevoked() != int64(len(revoked)) {
				t.Errorf("RevokeCredentials revoked %d; want %d", resp.GetRevoked(), len(revoked))
			}
			if diff := cmp.Diff(ids, sorted(resp.GetCredentialIds())); diff != "" {
				t.Errorf("RevokeCredentials credential_ids (-want +got):\n%s", diff)
			}

			// Inactive at once.
			for _, c := range revoked {
				if in := s.introspect(t, c.GetToken()); in.GetActive() {
					t.Errorf("credential %s active after revocation", c.GetId())
				}
			}
			if in := s.introspect(t, kept.GetToken()); !in.GetActive() {
				t.Errorf("control credential %s inactive; the selector reached too far", kept.GetId())
			}

			// Nothing left in Redis of the revoked credentials; the control
			// credential is still there.
			if refs := s.referencesTo(t, ids); len(refs) != 0 {
				t.Errorf("Redis still references revoked credentials: %v", refs)
			}
			if keys := s.credKeys(t, kept.GetId()); len(keys) != 1 {
				t.Errorf("control credential keys = %v; want one", keys)
			}

			// One revoked event per credential, with the reason; none for
			// the control credential.
			s.expectOncePerCredential(t, evRevoked, ids)
			for _, r := range s.mustEvents(t, &auditv1.EventFilter{CredentialId: ids[0], Types: []eventsv1.EventType{evRevoked}}) {
				if got, want := r.GetEvent().GetReason(), tt.selector(p).GetReason(); got != want {
					t.Errorf("revoked event reason = %q; want %q", got, want)
				}
			}
			if n := len(s.mustEvents(t, &auditv1.EventFilter{CredentialId: kept.GetId(), Types: []eventsv1.EventType{evRevoked}})); n != 0 {
				t.Errorf("control credential has %d revoked events; want 0", n)
			}
		})
	}
}

// TestCompleteTask proves that completing a task ends every credential of
// the task at once and records one task-completed event.
func TestCompleteTask(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	p := s.party("complete")
	var creds []*issuedCred
	for _, agent := range []string{"-1", "-2", "-3"} {
		r := p.request()
		r.Agent.Id += agent
		creds = append(creds, s.issue(t, r))
	}
	other := p.request()
	other.Task.Id += "-other"
	kept := s.issue(t, other)
	ids := credIDs(creds...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.issuer.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: p.task, Reason: "e2e: done"})
	if err != nil {
		t.Fatalf("CompleteTask: %v", err)
	}
	if resp.GetRevoked() != int64(len(creds)) {
		t.Errorf("CompleteTask revoked %d; want %d", resp.GetRevoked(), len(creds))
	}
	if diff := cmp.Diff(ids, sorted(resp.GetCredentialIds())); diff != "" {
		t.Errorf("CompleteTask credential_ids (-want +got):\n%s", diff)
	}
	for _, c := range creds {
		if in := s.introspect(t, c.GetToken()); in.GetActive() {
			t.Errorf("credential %s active after its task completed", c.GetId())
		}
	}
	if in := s.introspect(t, kept.GetToken()); !in.GetActive() {
		t.Errorf("credential %s of another task inactive after CompleteTask", kept.GetId())
	}
	if refs := s.referencesTo(t, ids); len(refs) != 0 {
		t.Errorf("Redis still references the completed task's credentials: %v", refs)
	}

	filter := &auditv1.EventFilter{TaskId: p.task, Types: []eventsv1.EventType{evCompleted}}
	waitFor(t, 15*time.Second, "the task.completed event", func() bool { return len(s.eventsNow(filter)) > 0 })
	var completed []*auditv1.AuditRecord
	if !holdsFor(1500*time.Millisecond, func() bool { completed = s.eventsNow(filter); return len(completed) == 1 }) {
		t.Errorf("task.completed events for %s: %d; want exactly 1", p.task, len(completed))
	}
	ev := s.mustEvents(t, filter)[0].GetEvent()
	if diff := cmp.Diff(ids, sorted(ev.GetCredentialIds())); diff != "" {
		t.Errorf("task.completed event credential_ids (-want +got):\n%s", diff)
	}
	if ev.GetReason() != "e2e: done" {
		t.Errorf("task.completed reason = %q; want %q", ev.GetReason(), "e2e: done")
	}
}

// expectOncePerCredential waits until every credential in ids has an event
// of type typ in the audit log, then checks for a while that none has two.
func (s *stack) expectOncePerCredential(t testing.TB, typ eventsv1.EventType, ids []string) {
	t.Helper()
	count := func() map[string]int {
		m := map[string]int{}
		for _, id := range ids {
			m[id] = len(s.eventsNow(&auditv1.EventFilter{CredentialId: id, Types: []eventsv1.EventType{typ}}))
		}
		return m
	}
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
	}
	var got map[string]int
	waitFor(t, 15*time.Second, typ.String()+" events for every credential", func() bool {
		got = count()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	holdsFor(1500*time.Millisecond, func() bool {
		got = count()
		return cmp.Equal(want, got)
	})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s events per credential (-want +got):\n%s", typ, diff)
	}
}
