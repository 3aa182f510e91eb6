package load_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jitid/jitid/bench/internal/load"
)

func TestClosedCountsCallsAndErrors(t *testing.T) {
	t.Parallel()
	res := load.Closed(context.Background(), 4, 200*time.Millisecond, func(_ context.Context, _ int, seq uint64) error {
		time.Sleep(time.Millisecond)
		if seq%10 == 9 {
			return errors.New("every tenth call fails")
		}
		return nil
	})
	if res.Calls == 0 || res.Errors == 0 {
		t.Fatalf("calls %d errors %d: want both above zero", res.Calls, res.Errors)
	}
	if res.P50 < time.Millisecond || res.P99 < res.P50 || res.Max < res.P99 {
		t.Errorf("percentiles out of order or below the call time: %+v", res)
	}
}

// A server that stalls for a while must show up in open-loop latencies even
// for the calls that were due during the stall (no coordinated omission).
func TestOpenMeasuresFromIntendedSendTime(t *testing.T) {
	t.Parallel()
	stallUntil := time.Now().Add(150 * time.Millisecond)
	res := load.Open(context.Background(), 200, 500*time.Millisecond, 1, func(context.Context, int, uint64) error {
		if d := time.Until(stallUntil); d > 0 {
			time.Sleep(d)
		}
		return nil
	})
	if res.P90 < 50*time.Millisecond && res.Max < 100*time.Millisecond {
		t.Errorf("a 150ms stall is hidden: p90 %v max %v", res.P90, res.Max)
	}
	if res.Calls+res.Dropped == 0 {
		t.Error("no calls")
	}
}

func TestMedianTakesEachFigureApart(t *testing.T) {
	t.Parallel()
	runs := []load.Result{
		{Mode: "closed", Rate: 100, P50: 1, P99: 30, Calls: 10, Errors: 1},
		{Mode: "closed", Rate: 300, P50: 3, P99: 10, Calls: 30},
		{Mode: "closed", Rate: 200, P50: 2, P99: 20, Calls: 20, Errors: 2},
	}
	got := load.Median(runs)
	if got.Rate != 200 || got.P50 != 2 || got.P99 != 20 || got.Calls != 60 || got.Errors != 3 {
		t.Errorf("Median = %+v; want rate 200, p50 2, p99 20, calls 60, errors 3", got)
	}
	if even := load.MedianOf([]float64{4, 1, 3, 2}, func(f float64) float64 { return f }); even != 2.5 {
		t.Errorf("MedianOf even count = %v, want 2.5", even)
	}
	if empty := load.Median(nil); empty.Calls != 0 {
		t.Errorf("Median(nil) = %+v", empty)
	}
}

func TestPercentileNearestRank(t *testing.T) {
	t.Parallel()
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i + 1)
	}
	tests := []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"median", 0.5, 50},
		{"p99", 0.99, 99},
		{"p999 of 100 is the max", 0.999, 100},
		{"zero is the min", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := load.Percentile(sorted, tt.q); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if got := load.Percentile(nil, 0.99); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

// Calls cut short because the caller ended the run are neither latencies
// nor errors.
func TestOpenDoesNotCountCallsCutByCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	res := load.Open(ctx, 100, 2*time.Second, 4, func(ctx context.Context, _ int, _ uint64) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if res.Errors != 0 {
		t.Errorf("errors = %d (%s), want 0: every call was cut by the end of the run", res.Errors, res.FirstError)
	}
}

// The run ends by cancellation: calls carry no deadline of the run (only
// their own, much longer, bound), on
// which gRPC would fail them a moment before ctx.Err says so (and the
// caller would count them as errors).
func TestClosedCallsCarryNoRunDeadline(t *testing.T) {
	t.Parallel()
	res := load.Closed(context.Background(), 4, 100*time.Millisecond, func(ctx context.Context, _ int, _ uint64) error {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 5*time.Second {
			return errors.New("call has the run's deadline")
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if res.Errors != 0 || res.Calls == 0 {
		t.Errorf("calls %d errors %d (%s): want calls and no errors", res.Calls, res.Errors, res.FirstError)
	}
}
