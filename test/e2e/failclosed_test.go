package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
)

// TestPolicyUnavailable proves "no credential without a decision": with
// the policy service hung past the issuer's -policy-timeout, or stopped,
// the issuer refuses with UNAVAILABLE and writes nothing.
func TestPolicyUnavailable(t *testing.T) {
	t.Parallel()
	const policyTimeout = 500 * time.Millisecond
	s := startStack(t, stackOptions{policyTimeout: policyTimeout})

	// Granted credentials: before, between and after the outages. They
	// are all the audit log and Redis may hold at the end.
	var granted []*issuedCred
	granted = append(granted, s.issueWhenAvailable(t, "before"))

	t.Run("policy hangs", func(t *testing.T) {
		s.policy.Pause()
		defer s.policy.Resume()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := s.issuer.IssueCredential(ctx, s.party("hang").request())
		took := time.Since(start)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("IssueCredential with policy hung = %v, %v; want UNAVAILABLE", resp.GetCredential().GetId(), err)
		}
		// About the policy timeout: not the caller's 10s deadline.
		if took > policyTimeout+1500*time.Millisecond {
			t.Errorf("IssueCredential with policy hung took %v; want about the -policy-timeout %v", took, policyTimeout)
		}
		t.Logf("refused after %v (-policy-timeout %v)", took.Round(time.Millisecond), policyTimeout)
	})
	granted = append(granted, s.issueWhenAvailable(t, "between"))

	t.Run("policy stopped", func(t *testing.T) {
		s.policy.Stop()
		defer s.policy.Start()
		for i, suffix := range []string{"down-1", "down-2"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := s.issuer.IssueCredential(ctx, s.party(suffix).request())
			cancel()
			if status.Code(err) != codes.Unavailable {
				t.Errorf("IssueCredential #%d with policy stopped = %v, %v; want UNAVAILABLE", i, resp.GetCredential().GetId(), err)
			}
		}
	})
	granted = append(granted, s.issueWhenAvailable(t, "after"))

	// Redis holds the granted credentials and nothing else.
	var want []string
	for _, id := range credIDs(granted...) {
		want = append(want, s.credKeys(t, id)...)
	}
	if diff := cmp.Diff(sorted(want), s.credKeys(t, "*")); diff != "" {
		t.Errorf("credential keys (want only the granted ones; -want +got):\n%s", diff)
	}
	// The audit log holds their issued events and nothing else.
	s.expectOnlyIssued(t, granted)
}

// issueWhenAvailable issues a valid credential, retrying UNAVAILABLE for a
// while: a server that was away (policy, NATS) may take the issuer's
// clients a moment to reconnect to.
func (s *stack) issueWhenAvailable(t testing.TB, suffix string) *issuedCred {
	t.Helper()
	var cred *issuedCred
	waitFor(t, 15*time.Second, "the issuer to grant a valid request", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := s.issuer.IssueCredential(ctx, s.party(suffix).request())
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("IssueCredential(%s): %v", suffix, err)
			}
			return false
		}
		cred = &issuedCred{Credential: resp.GetCredential(), token: resp.GetToken()}
		return true
	})
	return cred
}

// expectOnlyIssued waits for the issued events of creds and fails unless
// they are all the audit log holds: whatever else happened wrote no event.
func (s *stack) expectOnlyIssued(t testing.TB, creds []*issuedCred) {
	t.Helper()
	want := map[string]string{}
	for _, c := range creds {
		want[c.GetId()] = evIssued.String()
	}
	got := map[string]string{}
	record := func() {
		got = map[string]string{}
		for _, r := range s.eventsNow(&auditv1.EventFilter{}) {
			key := r.GetEvent().GetCredentialId()
			if key == "" {
				key = "task " + r.GetEvent().GetTask().GetId()
			}
			if _, dup := got[key]; dup {
				key += " (again)"
			}
			got[key] = r.GetEvent().GetType().String()
		}
	}
	waitFor(t, 15*time.Second, "the granted credentials' issued events", func() bool {
		record()
		for id := range want {
			if _, ok := got[id]; !ok {
				return false
			}
		}
		return true
	})
	holdsFor(time.Second, func() bool { record(); return cmp.Equal(want, got) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit log (want only the granted credentials' issued events; -want +got):\n%s", diff)
	}
}
