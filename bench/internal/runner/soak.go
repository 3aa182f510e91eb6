package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/bench/internal/report"
	"github.com/jitid/jitid/bench/internal/workload"
)

// soak runs the 70/25/5 mix in open loop for c.Soak, in segments, and
// records each process's RSS after every segment. Memory has not grown when
// each service's RSS at the end is within 10% (or 8 MiB) of its RSS after
// the first segment, which is the warm-up.
func soak(ctx context.Context, c Config, out io.Writer) error {
	rep := &report.Report{Machine: machine(1, "make soak ("+strings.Join(os.Args, " ")+")")}
	r, err := startSuite(ctx, c, out, rep)
	if err != nil {
		if r != nil {
			r.stop()
		}
		return err
	}
	defer r.stop()
	segments := 10
	seg := c.Soak / time.Duration(segments)
	if seg < 5*time.Second {
		seg, segments = 5*time.Second, max(int(c.Soak/(5*time.Second)), 2)
	}
	r.say("soak: mix 70/25/5 at %s/s open loop for %v, %d segments", report.Count(c.SoakRate), c.Soak, segments)
	r.memory("start (idle)")
	var runs []load.Result
	var first map[string]int64
	var last map[string]int64
	for i := range segments {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A fresh pool each segment, so no token expires while it is used.
		creds, err := workload.Mint(ctx, r.iss, workload.NewRequests("soakpool"), 500)
		if err != nil {
			return err
		}
		res := load.Open(ctx, c.SoakRate, seg, 512, workload.Mix(r.iss, workload.NewRequests("soak"), workload.Tokens(creds)))
		runs = append(runs, res)
		last = r.memory(fmt.Sprintf("segment %d (%v)", i+1, time.Duration(i+1)*seg))
		if i == 0 {
			first = last
		}
		r.say("segment %d/%d: rate %s/s p99 %s errors %d %s; issuer %s policy %s audit %s", i+1, segments,
			report.Count(res.Rate), report.Millis(res.P99), res.Errors, res.FirstError,
			report.MiB(last["issuer"]), report.MiB(last["policy"]), report.MiB(last["audit"]))
	}
	med := load.Median(runs)
	rep.Figures = append(rep.Figures, report.Figure{Workload: "soak: mix 70/25/5", Result: med, Runs: len(runs)})
	for _, name := range []string{"issuer", "policy", "audit"} {
		a, b := first[name], last[name]
		grew := b - a
		ok := grew <= 8<<20 || float64(grew) <= 0.10*float64(a)
		r.target("soak: no RSS growth, "+name, "end within 10% (or 8 MiB) of after warm-up",
			fmt.Sprintf("%s -> %s", report.MiB(a), report.MiB(b)), ok && med.Errors == 0)
	}
	var b strings.Builder
	rep.Text(&b)
	fmt.Fprintln(out)
	fmt.Fprint(out, b.String())
	if c.Doc != "" {
		return writeDoc(c.Doc, report.SoakBeginMarker, report.SoakEndMarker, rep)
	}
	return nil
}
