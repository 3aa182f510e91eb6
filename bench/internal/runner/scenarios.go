package runner

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
	"github.com/jitid/jitid/bench/internal/workload"
)

// issue runs workload (a) closed and open, watches the audit consumer's lag
// meanwhile (workload e) and counts the Redis commands per issuance.
func (r *run) issue(ctx context.Context, issueRate *float64) error {
	reqs := workload.NewRequests("issue")
	call := workload.Issue(r.iss, reqs)

	var runs []load.Result
	var growth, stored []float64
	var maxBehind uint64
	var drains []time.Duration
	stats0, err := workload.CommandStats(ctx, r.s.Redis.Addr())
	if err != nil {
		return err
	}
	cpu0 := r.cpu()
	var calls int64
	for i := range r.c.Runs {
		stop := r.aud.Watch(ctx, 250*time.Millisecond)
		res := load.Closed(ctx, r.c.Callers, r.c.Duration, call)
		samples := stop()
		drain, err := r.aud.WaitDrained(ctx, 2*time.Minute)
		if err != nil {
			return err
		}
		g := workload.Growth(samples)
		var rate float64
		if n := len(samples); n >= 2 {
			rate = (samples[n-1].Stored - samples[0].Stored) / (samples[n-1].At - samples[0].At).Seconds()
		}
		r.say("IssueCredential run %d/%d: closed rate %s/s p50 %s p99 %s errors %d %s; audit stored %s/s, lag growth %.0f events/s, max lag %d, drained %v after",
			i+1, r.c.Runs, report.Count(res.Rate), report.Millis(res.P50), report.Millis(res.P99), res.Errors, res.FirstError,
			report.Count(rate), g, workload.MaxBehind(samples), drain.Round(time.Millisecond))
		runs = append(runs, res)
		calls += res.Calls
		growth = append(growth, g)
		stored = append(stored, rate)
		maxBehind = max(maxBehind, workload.MaxBehind(samples))
		drains = append(drains, drain)
		if i == 0 {
			r.roundTrips(ctx, stats0, res)
		}
	}
	res := load.Median(runs)
	// The CPU includes relaying and storing the events: audit keeps up.
	r.cpuPerCall(fmt.Sprintf("IssueCredential (closed, %d callers; events relayed and audited)", r.c.Callers), cpu0, calls)
	*issueRate = res.Rate
	r.issueRate = res.Rate
	r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: "IssueCredential", Result: res, Runs: len(runs)})
	med := func(xs []float64) float64 { return load.MedianOf(xs, func(f float64) float64 { return f }) }
	r.target(fmt.Sprintf("Issue closed loop, %d callers", r.c.Callers), ">= 4,000/s", report.Count(res.Rate)+"/s"+errNote(res), res.Rate >= 4000 && res.Errors == 0)
	r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: "audit ingest during closed-loop issue", Unit: "events/s",
		Result: load.Result{Mode: "closed", Concurrency: r.c.Callers, Rate: med(stored)}, Runs: len(stored)})
	drain := time.Duration(load.MedianOf(drains, func(d time.Duration) float64 { return float64(d) }))
	flat := med(growth) < 0.02*res.Rate
	r.target("Audit keeps up with closed-loop issuance (lag flat)", "lag growth < 2% of the issue rate",
		fmt.Sprintf("stored %s/s, lag growth %.0f events/s, max lag %d, drained %v after the run", report.Count(med(stored)), med(growth), maxBehind, drain.Round(time.Millisecond)),
		flat)
	r.memory("IssueCredential closed")

	stop := r.aud.Watch(ctx, 250*time.Millisecond)
	open := r.open(ctx, "IssueCredential", r.c.IssueRate, call)
	samples := stop()
	r.target(fmt.Sprintf("Issue p99 at %s/s open loop", report.Count(r.c.IssueRate)), "< 15 ms",
		report.Millis(open.P99)+errNote(open), open.P99 < 15*time.Millisecond && open.Errors == 0 && open.Rate >= 0.97*r.c.IssueRate)
	r.note("audit lag during open-loop issue at %s/s (%d runs): growth %.0f events/s, max %d events behind",
		report.Count(r.c.IssueRate), r.c.Runs, workload.Growth(samples), workload.MaxBehind(samples))
	// Half the target rate: the latency of an issuer that is not saturated.
	r.open(ctx, "IssueCredential", r.c.IssueRate/2, call)
	if _, err := r.aud.WaitDrained(ctx, 2*time.Minute); err != nil {
		return err
	}
	r.memory("IssueCredential open")
	return nil
}

// roundTrips counts the Redis commands of the issuances of one run, once
// the relay has moved their events to JetStream.
func (r *run) roundTrips(ctx context.Context, before map[string]int64, res load.Result) {
	after, err := workload.CommandStats(ctx, r.s.Redis.Addr())
	if err != nil {
		r.note("Redis command counts unavailable: %v", err)
		return
	}
	n := float64(res.Calls + res.Errors)
	var parts []string
	names := make([]string, 0, len(after))
	for k := range after {
		names = append(names, k)
	}
	slices.Sort(names)
	var inScript []string
	for _, k := range names {
		d := after[k] - before[k]
		if d <= 0 || k == "info" {
			continue
		}
		part := fmt.Sprintf("%s %.2f", k, float64(d)/n)
		if scriptCommands[k] {
			inScript = append(inScript, part)
		} else {
			parts = append(parts, part)
		}
	}
	r.note("Redis commands sent per issuance (INFO commandstats over %s issuances; relay and sweeper included): %s; run inside scripts, no round trip: %s",
		report.Count(n), strings.Join(parts, ", "), strings.Join(inScript, ", "))
}

// heavy runs the 100,000-credential scenarios.
func (r *run) heavy(ctx context.Context) error {
	n := r.c.Mass
	if r.wants("catchup") {
		r.say("audit catch-up: stopping audit, publishing %s events", report.Count(float64(n)))
		d, err := r.aud.CatchUp(ctx, n)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		rate := float64(n) / d.Seconds()
		r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: fmt.Sprintf("audit catch-up of %s events", report.Count(float64(n))),
			Unit: "events/s", Result: load.Result{Mode: "backlog", Rate: rate, Max: d}, Runs: 1})
		r.target(fmt.Sprintf("Audit catches up %s events", report.Count(float64(n))), "< 30 s",
			fmt.Sprintf("%.1f s (%s events/s, from process start)", d.Seconds(), report.Count(rate)), d < 30*time.Second)
		r.memory("audit catch-up")
	}
	if r.wants("revoke") {
		r.say("revoke by delegator: minting %s credentials for one delegator", report.Count(float64(n)))
		res, err := workload.RevokeByDelegator(ctx, r.iss, r.aud, n, r.cpu)
		if err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
		inactive := "not all"
		if res.AllInactive {
			inactive = fmt.Sprintf("all %d", res.Sampled)
		}
		r.note("revoke by delegator: %s credentials minted at %s/s; %s of %d sampled tokens (introspected %d times from the call's start, the slowest call %v) inactive %v after the call started (the first %v after); RevokeCredentials revoked %s in %v; %d sampled tokens active after it returned; %s revoked events in the audit log, the last %v after the call started",
			report.Count(float64(n)), report.Count(res.MintRate), inactive, res.Sampled, res.Polls, res.SlowestPoll.Round(time.Millisecond),
			res.Inactive.Round(time.Millisecond), res.FirstInactive.Round(time.Millisecond),
			report.Count(float64(res.Revoked)), res.Call.Round(time.Millisecond), res.StillActive,
			report.Count(float64(res.Audited)), res.AuditedAfter.Round(time.Millisecond))
		r.cpuTotal(fmt.Sprintf("RevokeCredentials by delegator, per credential (%s)", report.Count(float64(n))), res.CPU, int64(n))
		r.target(fmt.Sprintf("Revoke by delegator, %s live credentials", report.Count(float64(n))),
			fmt.Sprintf("all inactive < 3 s (%d sampled, introspected from the call's start), every revoked event audited", res.Sampled),
			fmt.Sprintf("%s inactive after %.2f s (call %.2f s), %s revoked, %s audited", inactive, res.Inactive.Seconds(), res.Call.Seconds(),
				report.Count(float64(res.Revoked)), report.Count(float64(res.Audited))),
			res.AllInactive && res.Inactive < 3*time.Second && res.Revoked == n && res.StillActive == 0 && res.Audited == n)
		r.memory("revoke by delegator")
	}
	if r.wants("expiry") {
		// Time to mint them at the rate just seen, plus room for audit to
		// drain their issued events before they expire.
		mint := 1000.0
		if r.issueRate > 0 {
			mint = 0.7 * r.issueRate
		}
		expireIn := time.Duration(float64(n)/mint*float64(time.Second)) + 30*time.Second
		r.say("mass expiry: minting %s credentials expiring in the same second, %v from now", report.Count(float64(n)), expireIn.Round(time.Second))
		rate := r.c.ExpiryRate
		if rate <= 0 {
			// Half of what the issuer sustained, so that the latency shows
			// the sweep, not an overloaded issuer.
			rate = min(r.c.IssueRate, max(r.issueRate/2, 100))
		}
		res, err := workload.MassExpiry(ctx, r.iss, r.aud, n, expireIn, rate, r.cpu)
		if err != nil {
			return fmt.Errorf("mass expiry: %w", err)
		}
		r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: "IssueCredential during mass expiry", Result: res.Issue, Runs: 1})
		r.note("mass expiry: %s credentials minted at %s/s; %s expired events on the stream, the last %v after the expiry",
			report.Count(float64(n)), report.Count(res.MintRate), report.Count(float64(res.Reported)), res.Last.Round(time.Millisecond))
		r.cpuTotal(fmt.Sprintf("mass expiry, per expired credential (%s, issuance included)", report.Count(float64(n))), res.CPU, int64(n))
		r.target(fmt.Sprintf("Mass expiry of %s credentials in one second", report.Count(float64(n))), "all reported < 10 s after expiry",
			fmt.Sprintf("%s reported, last %.1f s after", report.Count(float64(res.Reported)), res.Last.Seconds()), res.Reported == n && res.Last < 10*time.Second)
		r.target(fmt.Sprintf("Issue p99 during mass expiry, %s/s open loop", report.Count(rate)), "< 30 ms",
			report.Millis(res.Issue.P99)+errNote(res.Issue), res.Issue.P99 < 30*time.Millisecond && res.Issue.Errors == 0)
		if _, err := r.aud.WaitDrained(ctx, 3*time.Minute); err != nil {
			return err
		}
		r.memory("mass expiry")
	}
	return nil
}

// scriptCommands are the commands the issuer runs only inside its Lua
// scripts: INFO commandstats counts them, but they cost no round trip.
var scriptCommands = map[string]bool{
	"exists": true, "hset": true, "pexpireat": true, "pexpiretime": true, "sadd": true, "zadd": true,
	"xadd": true, "zrem": true, "hdel": true, "srem": true, "del": true, "zrangebyscore": true, "hget": true,
	"scard": true, "sismember": true, "set": true,
}

// cpuTotal records CPU times measured over a scenario, per unit of work.
func (r *run) cpuTotal(name string, used map[string]time.Duration, units int64) {
	if used == nil || units <= 0 {
		return
	}
	use := report.CPUUse{Workload: name, PerCall: map[string]time.Duration{}, Cores: runtime.NumCPU()}
	for k, v := range used {
		use.PerCall[k] = v / time.Duration(units)
	}
	r.rep.CPU = append(r.rep.CPU, use)
}
