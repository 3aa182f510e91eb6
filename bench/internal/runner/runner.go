// Package runner is the benchmark of issue 5 from end to end: it starts the
// suite, drives every workload in closed and open loop, measures the
// references (echo ceiling, redis-benchmark, offline verifier) in the same
// run, checks the targets and renders the report. Soak runs a steady mix
// and watches memory.
package runner

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
	"github.com/jitid/jitid/bench/internal/suite"
	"github.com/jitid/jitid/bench/internal/workload"
)

// Config is the run, from flags.
type Config struct {
	BinDir  string
	WorkDir string
	Doc     string
	Runs    int
	// Duration is the length of one closed- or open-loop run.
	Duration       time.Duration
	Callers        int
	Conns          int
	IssueRate      float64
	IntrospectRate float64
	// Mass is the size of the mass-expiry, revoke and backlog scenarios.
	Mass      int
	HeavyRuns int
	Only      string
	// Soak, when positive, runs the soak instead of the benchmark.
	Soak     time.Duration
	SoakRate float64
	// ExpiryRate is the open-loop issue rate during the mass expiry; half
	// the closed-loop issue rate measured when zero.
	ExpiryRate float64
	// Profile, when set, is the directory that receives the runtime
	// profiles of issuer, policy and audit during the first run of each
	// workload.
	Profile string
	// Plaintext runs the suite without TLS and caller authentication,
	// for comparison with the default (mutual TLS, allow-lists).
	Plaintext bool
	// RateLimit and RateBurst are the issuer's per-caller limit: far above
	// what the load reaches, except in the flood test.
	RateLimit, RateBurst int
}

// Main parses args and runs.
func Main(ctx context.Context, args []string, out io.Writer) error {
	var c Config
	fs := flag.NewFlagSet("jitid-load", flag.ContinueOnError)
	fs.StringVar(&c.BinDir, "bin-dir", "bin", "directory of issuer, policy, audit, jitid-nats and jitid-echo")
	fs.StringVar(&c.WorkDir, "work-dir", "", "data and logs of the suite (a new temporary directory when empty; removed after a successful run)")
	fs.StringVar(&c.Doc, "doc", "", "write the report into this Markdown file between its markers (docs/BENCHMARKS.md)")
	fs.IntVar(&c.Runs, "runs", 3, "runs of each closed- and open-loop workload; figures are their medians")
	fs.DurationVar(&c.Duration, "duration", 8*time.Second, "length of one closed- or open-loop run")
	fs.IntVar(&c.Callers, "callers", 64, "concurrent callers in closed loop")
	fs.IntVar(&c.Conns, "conns", 4, "gRPC connections per server used by the load generator")
	fs.Float64Var(&c.IssueRate, "issue-rate", 2000, "open-loop IssueCredential rate, per second")
	fs.Float64Var(&c.IntrospectRate, "introspect-rate", 5000, "open-loop IntrospectCredential rate, per second")
	fs.IntVar(&c.Mass, "mass", 100000, "credentials in the mass-expiry and revoke scenarios, events in the audit backlog")
	fs.IntVar(&c.HeavyRuns, "heavy-runs", 1, "runs of the mass scenarios (backlog, revoke, mass expiry)")
	fs.StringVar(&c.Only, "only", "", "comma-separated workloads to run (echo,policy,issue,introspect,mix,verify,redis,catchup,revoke,expiry,security,flood); all when empty")
	fs.Float64Var(&c.ExpiryRate, "expiry-rate", 0, "open-loop issue rate during the mass expiry (half the measured closed-loop issue rate when 0)")
	fs.StringVar(&c.Profile, "profile", "", "write CPU and allocation profiles of issuer, policy and audit, taken during the first run of each workload, into this directory (that run's figures then include the profiler's cost)")
	fs.BoolVar(&c.Plaintext, "plaintext", false, "run the suite in plaintext without caller authentication (the default is mutual TLS with allow-lists, as make run), to compare")
	fs.DurationVar(&c.Soak, "soak", 0, "run the soak for this long instead of the benchmark (make soak: 10m)")
	fs.Float64Var(&c.SoakRate, "soak-rate", 1000, "open-loop rate of the soak's mix, per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Runs < 1 || c.Duration <= 0 || c.Callers < 1 || c.Mass < 1 || c.HeavyRuns < 0 {
		return fmt.Errorf("-runs, -duration, -callers and -mass must be positive")
	}
	// The load generator stays bounded whatever the flags say.
	if c.Duration > 10*time.Minute || c.Soak > 24*time.Hour || c.Mass > 1_000_000 {
		return fmt.Errorf("run too long: -duration at most 10m, -soak at most 24h, -mass at most 1,000,000")
	}
	cleanup := func() {}
	// The load is one caller: the issuer's default per-caller limit would
	// measure the limiter, not the suite.
	c.RateLimit, c.RateBurst = 1_000_000, 1_000_000
	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "jitid-bench-*")
		if err != nil {
			return err
		}
		c.WorkDir = dir
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	var err error
	if c.Soak > 0 {
		err = soak(ctx, c, out)
	} else {
		err = bench(ctx, c, out)
	}
	if err == nil {
		cleanup()
	} else {
		fmt.Fprintf(out, "logs of the suite kept in %s\n", c.WorkDir)
	}
	return err
}

type run struct {
	c     Config
	out   io.Writer
	s     *suite.Suite
	rep   *report.Report
	iss   *workload.Pool
	pol   *workload.Pool
	echo  *workload.Pool
	aud   *workload.Auditor
	start time.Time
	// issueRate is the closed-loop issue rate measured, 0 before.
	issueRate float64
	// profiles counts the workloads profiled, to number their files.
	profiles int
}

func (r *run) wants(name string) bool {
	if r.c.Only == "" {
		return true
	}
	return slices.Contains(strings.Split(r.c.Only, ","), name)
}

func (r *run) say(format string, a ...any) {
	fmt.Fprintf(r.out, "[%6.1fs] "+format+"\n", append([]any{time.Since(r.start).Seconds()}, a...)...)
}

func (r *run) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.rep.Notes = append(r.rep.Notes, s)
	r.say("%s", s)
}

func startSuite(ctx context.Context, c Config, out io.Writer, rep *report.Report) (*run, error) {
	r := &run{c: c, out: out, rep: rep, start: time.Now()}
	bin, err := filepath.Abs(c.BinDir)
	if err != nil {
		return nil, err
	}
	r.say("starting the suite (binaries in %s, data and logs in %s)", bin, c.WorkDir)
	r.s, err = suite.Start(ctx, suite.Options{BinDir: bin, WorkDir: c.WorkDir, Pprof: c.Profile != "", MTLS: !c.Plaintext,
		RateLimit: c.RateLimit, RateBurst: c.RateBurst})
	if err != nil {
		r.s.Stop()
		return nil, err
	}
	// The load calls the issuer as the demo platform and policy as the
	// issuer does.
	platform, err := r.s.Creds("platform")
	if err != nil {
		return r, err
	}
	issuer, err := r.s.Creds("issuer")
	if err != nil {
		return r, err
	}
	if r.iss, err = workload.Dial(r.s.IssuerAddr, c.Conns, platform); err != nil {
		return r, err
	}
	if r.pol, err = workload.Dial(r.s.PolicyAddr, c.Conns, issuer); err != nil {
		return r, err
	}
	if r.echo, err = workload.Dial(r.s.EchoAddr, c.Conns, nil); err != nil {
		return r, err
	}
	if r.aud, err = workload.NewAuditor(ctx, r.s); err != nil {
		return r, err
	}
	rep.Processes = []string{"issuer", "policy", "audit", "jitid-nats", "redis-server"}
	return r, nil
}

func (r *run) stop() {
	for _, p := range []*workload.Pool{r.iss, r.pol, r.echo} {
		if p != nil {
			p.Close()
		}
	}
	if r.aud != nil {
		r.aud.Close()
	}
	if r.s != nil {
		r.s.Stop()
	}
	// Stopped once: the security comparison stops the suite before the
	// deferred stop runs.
	r.iss, r.pol, r.echo, r.aud, r.s = nil, nil, nil, nil, nil
}

// memory records every process's RSS now.
func (r *run) memory(after string) map[string]int64 {
	m := report.Memory{After: after, RSS: map[string]int64{}}
	for _, p := range []*suite.Proc{r.s.Issuer, r.s.Policy, r.s.Audit, r.s.NATS} {
		if v, err := p.RSS(); err == nil {
			m.RSS[p.Name] = v
		}
	}
	if pid, err := workload.RedisPID(context.Background(), r.s.Redis.Addr()); err == nil {
		if v, err := suite.RSSOf(pid); err == nil {
			m.RSS["redis-server"] = v
		}
	}
	r.rep.Memory = append(r.rep.Memory, m)
	return m.RSS
}

// cpu returns the CPU time used so far by every process.
func (r *run) cpu() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, p := range []*suite.Proc{r.s.Issuer, r.s.Policy, r.s.Audit, r.s.NATS, r.s.Echo} {
		if pid := p.PID(); pid > 0 {
			if d, err := suite.CPUOf(pid); err == nil {
				out[p.Name] = d
			}
		}
	}
	if pid, err := workload.RedisPID(context.Background(), r.s.Redis.Addr()); err == nil {
		if d, err := suite.CPUOf(pid); err == nil {
			out["redis-server"] = d
		}
	}
	if d, err := suite.CPUOf(0); err == nil {
		out["jitid-load"] = d
	}
	return out
}

// cpuPerCall records the CPU each process spent per call since before.
func (r *run) cpuPerCall(name string, before map[string]time.Duration, calls int64) {
	if calls <= 0 {
		return
	}
	after := r.cpu()
	use := report.CPUUse{Workload: name, PerCall: map[string]time.Duration{}, Cores: runtime.NumCPU()}
	for k, v := range after {
		use.PerCall[k] = (v - before[k]) / time.Duration(calls)
	}
	r.rep.CPU = append(r.rep.CPU, use)
}

// repeat runs one workload c.Runs times and records the median.
func (r *run) repeat(name string, once func() load.Result) load.Result {
	var runs []load.Result
	cpu0 := r.cpu()
	defer func() {
		var calls int64
		for _, res := range runs {
			calls += res.Calls
		}
		res := load.Median(runs)
		r.cpuPerCall(fmt.Sprintf("%s (%s)", name, report.Figure{Result: res}.Mode()), cpu0, calls)
	}()
	for i := range r.c.Runs {
		var profiled chan error
		if i == 0 && r.c.Profile != "" {
			profiled = r.profile(name, r.c.Duration)
		}
		res := once()
		if profiled != nil {
			if err := <-profiled; err != nil {
				r.say("%s: profiles: %v", name, err)
			}
		}
		r.say("%s run %d/%d: %s rate %s/s p50 %s p99 %s errors %d %s", name, i+1, r.c.Runs, res.Mode,
			report.Count(res.Rate), report.Millis(res.P50), report.Millis(res.P99), res.Errors, res.FirstError)
		runs = append(runs, res)
	}
	med := load.Median(runs)
	r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: name, Result: med, Runs: len(runs)})
	return med
}

// profile starts recording the services' profiles for about d (see
// suite.Profile), named after the workload; the channel yields the outcome.
func (r *run) profile(name string, d time.Duration) chan error {
	r.profiles++
	slug := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			return c
		}
		if c >= 'A' && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return '-'
	}, name)
	file := fmt.Sprintf("%02d-%s", r.profiles, slug)
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	go func() {
		defer cancel()
		done <- r.s.Profile(ctx, r.c.Profile, file, d-time.Second)
	}()
	return done
}

func (r *run) closed(ctx context.Context, name string, call load.Call) load.Result {
	return r.repeat(name, func() load.Result { return load.Closed(ctx, r.c.Callers, r.c.Duration, call) })
}

func (r *run) open(ctx context.Context, name string, rate float64, call load.Call) load.Result {
	return r.repeat(name, func() load.Result { return load.Open(ctx, rate, r.c.Duration, 512, call) })
}

func (r *run) target(name, want, got string, met bool) {
	r.rep.Targets = append(r.rep.Targets, report.Target{Name: name, Want: want, Got: got, Met: met, Measured: true})
}

func (r *run) ratio(name string, num, den float64, numLabel, denLabel string) {
	if num > 0 && den > 0 {
		r.rep.Ratios = append(r.rep.Ratios, report.Ratio{Name: name, Num: num, Den: den, NumLabel: numLabel, DenLabel: denLabel})
	}
}

func bench(ctx context.Context, c Config, out io.Writer) error {
	rep := &report.Report{Machine: machine(c.Runs, "make bench ("+strings.Join(os.Args, " ")+")")}
	r, err := startSuite(ctx, c, out, rep)
	if err != nil {
		if r != nil {
			r.stop()
		}
		return err
	}
	defer r.stop()
	r.memory("start (idle)")

	// Warm up: connections, the issuer's script in Redis, the JetStream
	// stream and consumer, the services' heaps.
	r.say("warming up")
	load.Closed(ctx, 16, 2*time.Second, workload.Issue(r.iss, workload.NewRequests("warmup")))
	if _, err := r.aud.WaitDrained(ctx, time.Minute); err != nil {
		return err
	}

	var echoRate, issueRate, introspectRate float64
	if r.wants("echo") {
		res := r.closed(ctx, "gRPC echo (ceiling)", workload.Echo(r.echo, workload.EchoPayload(workload.NewRequests("echo"))))
		echoRate = res.Rate
	}
	if r.wants("policy") {
		reqs := workload.NewRequests("policy")
		res := r.closed(ctx, "policy Evaluate", workload.Evaluate(r.pol, reqs))
		r.memory("policy Evaluate")
		r.ratio("policy Evaluate / echo", res.Rate, echoRate, "Evaluate", "echo")
	}
	if r.wants("issue") {
		if err := r.issue(ctx, &issueRate); err != nil {
			return err
		}
		r.ratio("issue / echo (fraction of the gRPC ceiling)", issueRate, echoRate, "issue", "echo")
	}
	var tokens []string
	if r.wants("introspect") || r.wants("mix") || r.wants("verify") {
		creds, err := workload.Mint(ctx, r.iss, workload.NewRequests("pool"), 5000)
		if err != nil {
			return fmt.Errorf("mint the token pool: %w", err)
		}
		tokens = workload.Tokens(creds)
		if _, err := r.aud.WaitDrained(ctx, time.Minute); err != nil {
			return err
		}
	}
	if r.wants("introspect") {
		call := workload.Introspect(r.iss, tokens)
		res := r.closed(ctx, "IntrospectCredential", call)
		introspectRate = res.Rate
		r.target("Introspect closed loop", ">= 10,000/s", report.Count(res.Rate)+"/s", res.Rate >= 10000 && res.Errors == 0)
		res = r.open(ctx, "IntrospectCredential", c.IntrospectRate, call)
		r.target(fmt.Sprintf("Introspect p99 at %s/s open loop", report.Count(c.IntrospectRate)), "< 5 ms",
			report.Millis(res.P99)+errNote(res), res.P99 < 5*time.Millisecond && res.Errors == 0 && res.Rate >= 0.97*c.IntrospectRate)
		r.open(ctx, "IntrospectCredential", c.IntrospectRate/2, call)
		r.memory("IntrospectCredential")
		r.ratio("introspect / echo", introspectRate, echoRate, "introspect", "echo")
	}
	if r.wants("mix") {
		res := r.closed(ctx, "mix 70/25/5", workload.Mix(r.iss, workload.NewRequests("mix"), tokens))
		r.memory("mix")
		r.ratio("mix / echo", res.Rate, echoRate, "mix", "echo")
		if _, err := r.aud.WaitDrained(ctx, 2*time.Minute); err != nil {
			return err
		}
	}
	if r.wants("verify") {
		v, err := workload.Verifier(ctx, r.iss)
		if err != nil {
			return err
		}
		res := r.repeat("offline verify (pkg/credverify, in process)", func() load.Result {
			return load.Closed(ctx, runtime.NumCPU(), r.c.Duration/2, workload.Verify(v, tokens))
		})
		r.ratio("introspect / offline verify", introspectRate, res.Rate, "introspect", "verify")
	}
	if r.wants("redis") {
		var rates []float64
		for range c.Runs {
			rate, err := workload.RedisScriptRate(ctx, r.s.Redis.Addr(), 100000)
			if err != nil {
				return err
			}
			r.say("redis-benchmark EVALSHA of the issue script, 64 clients: %s/s", report.Count(rate))
			rates = append(rates, rate)
		}
		med := load.MedianOf(rates, func(f float64) float64 { return f })
		r.rep.Figures = append(r.rep.Figures, report.Figure{Workload: "redis-benchmark EVALSHA (issue script)",
			Result: load.Result{Mode: "closed", Concurrency: 64, Rate: med}, Runs: len(rates), Unit: "scripts/s"})
		r.ratio("issue / redis-benchmark of its script", issueRate, med, "issue", "EVALSHA")
	}
	for range c.HeavyRuns {
		if err := r.heavy(ctx); err != nil {
			return err
		}
	}
	if !c.Plaintext && r.wants("security") {
		if err := r.securityCost(ctx, issueRate, introspectRate); err != nil {
			return err
		}
	}
	if !c.Plaintext && r.wants("flood") {
		if err := r.flood(ctx); err != nil {
			return err
		}
	}
	var b strings.Builder
	rep.Text(&b)
	fmt.Fprintln(out)
	fmt.Fprint(out, b.String())
	if c.Doc != "" {
		return writeDoc(c.Doc, report.BeginMarker, report.EndMarker, rep)
	}
	return nil
}

func errNote(res load.Result) string {
	if res.Errors == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d errors)", res.Errors)
}

func writeDoc(path, begin, end string, rep *report.Report) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var b strings.Builder
	rep.Markdown(&b)
	return os.WriteFile(path, []byte(report.Splice(string(old), begin, end, b.String())), 0o644) //nolint:gosec // G306: a document of the repository
}
