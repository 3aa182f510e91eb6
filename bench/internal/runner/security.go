package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
	"github.com/jitid/jitid/bench/internal/workload"
)

// securityCost measures the cost of security: issuance and introspection
// on the suite of this run (mutual TLS, each service with its allow-list
// of callers, the caller authenticated on every call) against the same
// suite started a second time in plaintext without caller authentication,
// on the same machine in the same run. The issue asks that security cost
// at most 15% of throughput.
func (r *run) securityCost(ctx context.Context, secureIssue, secureIntrospect float64) error {
	c := r.c
	c.Plaintext = true
	c.WorkDir = filepath.Join(r.c.WorkDir, "plaintext")
	// The suite of this run is stopped first: two suites on one machine
	// would share its cores.
	r.stop()
	r.say("security: the same suite in plaintext, without caller authentication, for comparison")
	p, err := startSuite(ctx, c, r.out, &report.Report{})
	if err != nil {
		return err
	}
	defer p.stop()
	load.Closed(ctx, 16, 2*time.Second, workload.Issue(p.iss, workload.NewRequests("warmup-plain")))
	if _, err := p.aud.WaitDrained(ctx, time.Minute); err != nil {
		return err
	}
	p.rep = r.rep
	if secureIssue > 0 {
		res := p.closed(ctx, "IssueCredential, plaintext without caller authentication", workload.Issue(p.iss, workload.NewRequests("issue-plain")))
		r.securityTarget("IssueCredential", secureIssue, res.Rate)
		if _, err := p.aud.WaitDrained(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	if secureIntrospect > 0 {
		creds, err := workload.Mint(ctx, p.iss, workload.NewRequests("pool-plain"), 5000)
		if err != nil {
			return fmt.Errorf("mint the plaintext token pool: %w", err)
		}
		res := p.closed(ctx, "IntrospectCredential, plaintext without caller authentication", workload.Introspect(p.iss, workload.Tokens(creds)))
		r.securityTarget("IntrospectCredential", secureIntrospect, res.Rate)
	}
	return nil
}

func (r *run) securityTarget(name string, secure, plain float64) {
	if plain <= 0 {
		return
	}
	cost := 1 - secure/plain
	r.target(name+": cost of mTLS and caller authentication", "<= 15% of plaintext throughput",
		fmt.Sprintf("%.1f%% (%s/s vs %s/s)", 100*cost, report.Count(secure), report.Count(plain)), cost <= 0.15)
}
