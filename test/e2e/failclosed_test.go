package e2e_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPolicyUnavailable proves "no credential without a decision": with
// the policy service stopped, or hung past the issuer's -policy-timeout,
// the issuer refuses with UNAVAILABLE and writes nothing.
func TestPolicyUnavailable(t *testing.T) {
	t.Parallel()
	const policyTimeout = 500 * time.Millisecond
	s := startStack(t, stackOptions{policyTimeout: policyTimeout})

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
	})

	if keys := s.credKeys(t, "*"); len(keys) != 0 {
		t.Errorf("credential keys after refusals only: %v; want none", keys)
	}
	// The issuer serves again once policy is back, and the refused requests
	// left no event: the barrier's issued event is the only record.
	s.expectOnlyAuditRecordAfterBarrier(t, "policy-back")
}
