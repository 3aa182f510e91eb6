// Package load drives a gRPC workload and measures it, in two modes:
//
//   - closed loop: N callers, each sending its next call when the last
//     returned; gives the peak throughput at that concurrency.
//   - open loop: calls are due at a fixed rate whatever happens to earlier
//     ones, and each latency is measured from the call's intended send time,
//     so that queueing inside the load generator or the server is counted
//     (no coordinated omission).
package load

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// callTimeout bounds every call.
const callTimeout = 10 * time.Second

// Call makes one call. worker identifies the caller (0..N-1) and seq the
// call number, so a workload can vary its requests without shared state.
type Call func(ctx context.Context, worker int, seq uint64) error

// Result is what one run measured.
type Result struct {
	Mode        string        `json:"mode"`
	Concurrency int           `json:"concurrency,omitempty"`
	TargetRate  float64       `json:"target_rate,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
	Calls       int64         `json:"calls"`
	Errors      int64         `json:"errors"`
	// Dropped counts open-loop calls that could not even be started
	// because every sender was busy; they are errors too.
	Dropped int64         `json:"dropped,omitempty"`
	Rate    float64       `json:"rate"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	P999    time.Duration `json:"p999_ns"`
	Max     time.Duration `json:"max_ns"`
	// FirstError is an example of what failed.
	FirstError string `json:"first_error,omitempty"`
}

type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     atomic.Int64
	firstErr atomic.Value
}

func (r *recorder) add(local []time.Duration) {
	r.mu.Lock()
	r.lat = append(r.lat, local...)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.errs.Add(1)
	r.firstErr.CompareAndSwap(nil, err.Error())
}

func (r *recorder) result(mode string, elapsed time.Duration) Result {
	slices.Sort(r.lat)
	res := Result{Mode: mode, Duration: elapsed, Calls: int64(len(r.lat)), Errors: r.errs.Load()}
	res.Rate = float64(res.Calls) / elapsed.Seconds()
	res.P50, res.P90, res.P99, res.P999 = pct(r.lat, 0.50), pct(r.lat, 0.90), pct(r.lat, 0.99), pct(r.lat, 0.999)
	if n := len(r.lat); n > 0 {
		res.Max = r.lat[n-1]
	}
	if v, ok := r.firstErr.Load().(string); ok {
		res.FirstError = v
	}
	return res
}

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// Closed runs concurrency callers for d and measures successful calls.
func Closed(ctx context.Context, concurrency int, d time.Duration, call Call) Result {
	rec := &recorder{}
	// The run ends by cancellation, not by a deadline on the calls: gRPC
	// fails a call on its deadline a moment before ctx.Err says so, which
	// would count calls cut by the end of the run as errors.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(d, cancel)
	defer timer.Stop()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				t0 := time.Now()
				// Bounded, as in Open, so that a hung server cannot hold
				// the run forever.
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				err := call(cctx, w, seq)
				ccancel()
				if ctx.Err() != nil {
					break // a call cut by the end of the run is not counted
				}
				if err != nil {
					rec.fail(err)
					continue
				}
				local = append(local, time.Since(t0))
			}
			rec.add(local)
		}()
	}
	wg.Wait()
	res := rec.result("closed", time.Since(start))
	res.Concurrency = concurrency
	return res
}

// Open sends calls at rate per second for d, from at most maxInFlight
// concurrent senders, and measures each latency from the call's intended
// send time. Calls that find every sender busy queue (their wait counts);
// one that finds the queue full is dropped and counted as an error.
func Open(ctx context.Context, rate float64, d time.Duration, maxInFlight int, call Call) Result {
	rec := &recorder{}
	interval := time.Duration(float64(time.Second) / rate)
	total := int(d / interval)
	start := time.Now()
	// Calls due while every sender is busy wait in this queue, and their
	// wait counts in their latency; only a full queue drops a call.
	jobs := make(chan time.Time, max(64*maxInFlight, 4096))
	var dropped atomic.Int64
	var wg sync.WaitGroup
	var seq atomic.Uint64
	for w := range maxInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for due := range jobs {
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				err := call(cctx, w, seq.Add(1))
				cancel()
				if ctx.Err() != nil {
					continue // cut by the end of the run (ctx): not counted
				}
				if err != nil {
					rec.fail(err)
					continue
				}
				local = append(local, time.Since(due))
			}
			rec.add(local)
		}()
	}
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case jobs <- due:
		default:
			dropped.Add(1)
			rec.fail(errors.New("load generator saturated: every sender busy"))
		}
	}
	close(jobs)
	wg.Wait()
	res := rec.result("open", time.Since(start))
	res.TargetRate = rate
	res.Dropped = dropped.Load()
	return res
}

// Median returns, figure by figure, the median of several runs of the same
// workload: rate, each percentile and max are each the median of that
// figure across runs (not the figures of one median run); calls, errors
// and drops are summed. Mode, concurrency and target rate come from the
// first run.
func Median(runs []Result) Result {
	if len(runs) == 0 {
		return Result{}
	}
	out := runs[0]
	out.Calls, out.Errors, out.Dropped, out.FirstError = 0, 0, 0, ""
	for _, r := range runs {
		out.Calls += r.Calls
		out.Errors += r.Errors
		out.Dropped += r.Dropped
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
	}
	out.Rate = MedianOf(runs, func(r Result) float64 { return r.Rate })
	dur := func(f func(Result) time.Duration) time.Duration {
		return time.Duration(MedianOf(runs, func(r Result) float64 { return float64(f(r)) }))
	}
	out.Duration = dur(func(r Result) time.Duration { return r.Duration })
	out.P50 = dur(func(r Result) time.Duration { return r.P50 })
	out.P90 = dur(func(r Result) time.Duration { return r.P90 })
	out.P99 = dur(func(r Result) time.Duration { return r.P99 })
	out.P999 = dur(func(r Result) time.Duration { return r.P999 })
	out.Max = dur(func(r Result) time.Duration { return r.Max })
	return out
}

// MedianOf returns the median of f over xs; with an even count, the mean of
// the two middle values.
func MedianOf[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Percentile returns the q-quantile (0..1) of sorted by the nearest-rank
// method: the smallest value with at least q of the values at or below it.
func Percentile(sorted []time.Duration, q float64) time.Duration { return pct(sorted, q) }
