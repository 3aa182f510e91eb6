package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
	"github.com/jitid/jitid/bench/internal/workload"
)

// Flood test settings: the issuer's per-caller limit, and the steady
// caller's rate, well inside it.
const (
	floodLimit      = 200
	floodSteadyRate = 100
)

// flood starts the suite with a per-caller limit of floodLimit calls/s and
// measures a steady caller (the second platform, open loop at
// floodSteadyRate/s) alone, then while the demo platform floods issuance in
// closed loop: the flood must be answered RESOURCE_EXHAUSTED beyond the
// limit, and the steady caller's p99 stay within 1.5 times its baseline.
func (r *run) flood(ctx context.Context) error {
	c := r.c
	c.WorkDir = filepath.Join(r.c.WorkDir, "flood")
	c.RateLimit, c.RateBurst = floodLimit, floodLimit
	r.stop()
	r.say("flood: the suite with a per-caller limit of %d calls/s", floodLimit)
	f, err := startSuite(ctx, c, r.out, &report.Report{})
	if err != nil {
		return err
	}
	defer f.stop()
	other, err := f.s.Creds("platform-b")
	if err != nil {
		return err
	}
	steadyPool, err := workload.Dial(f.s.IssuerAddr, c.Conns, other)
	if err != nil {
		return err
	}
	defer steadyPool.Close()
	steady := workload.Issue(steadyPool, workload.NewRequests("flood-steady"))
	load.Open(ctx, floodSteadyRate, 2*time.Second, 512, steady) // warm-up
	base := load.Open(ctx, floodSteadyRate, c.Duration, 512, steady)

	var throttled, accepted, otherErr atomic.Int64
	flooder := workload.Issue(f.iss, workload.NewRequests("flood"))
	call := func(ctx context.Context, w int, seq uint64) error {
		err := flooder(ctx, w, seq)
		if ctx.Err() != nil {
			// The run's end cancels the calls in flight.
			return err
		}
		switch status.Code(err) {
		case codes.OK:
			accepted.Add(1)
		case codes.ResourceExhausted:
			throttled.Add(1)
		default:
			otherErr.Add(1)
		}
		return err
	}
	var wg sync.WaitGroup
	var floodRes load.Result
	wg.Go(func() { floodRes = load.Closed(ctx, c.Callers, c.Duration, call) })
	during := load.Open(ctx, floodSteadyRate, c.Duration, 512, steady)
	wg.Wait()

	r.rep.Figures = append(r.rep.Figures,
		report.Figure{Workload: "flood: steady caller alone", Result: base, Runs: 1},
		report.Figure{Workload: "flood: steady caller during the flood", Result: during, Runs: 1},
		report.Figure{Workload: "flood: the flooding caller", Result: floodRes, Runs: 1})
	acceptedRate := float64(accepted.Load()) / floodRes.Duration.Seconds()
	r.say("flood: flooder accepted %s/s, throttled %d, other errors %d; steady p99 %s alone, %s during",
		report.Count(acceptedRate), throttled.Load(), otherErr.Load(), report.Millis(base.P99), report.Millis(during.P99))
	// The burst lets floodLimit calls more through in the first second.
	limit := float64(floodLimit) * (1 + 1/floodRes.Duration.Seconds()) * 1.05
	r.target(fmt.Sprintf("flood: one caller throttled at %d/s (RESOURCE_EXHAUSTED)", floodLimit),
		fmt.Sprintf("accepted <= %s/s, the rest RESOURCE_EXHAUSTED", report.Count(limit)),
		fmt.Sprintf("accepted %s/s, %d RESOURCE_EXHAUSTED, %d other errors", report.Count(acceptedRate), throttled.Load(), otherErr.Load()),
		throttled.Load() > 0 && acceptedRate <= limit && otherErr.Load() == 0)
	r.target("flood: another caller's p99 during the flood", "<= 1.5 x its p99 alone, no errors",
		fmt.Sprintf("%s vs %s alone, %d errors", report.Millis(during.P99), report.Millis(base.P99), during.Errors),
		base.P99 > 0 && float64(during.P99) <= 1.5*float64(base.P99) && during.Errors == 0)
	return nil
}
