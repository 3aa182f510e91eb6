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
