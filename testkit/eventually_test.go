package testkit_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitid/jitid/testkit"
)

func TestEventuallyReturnsTheValueThatSatisfiedTheCondition(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	got := testkit.Eventually(t, "counter reaches 3", 5*time.Second, time.Millisecond, func() (int64, bool) {
		v := n.Add(1)
		return v, v >= 3
	})
	if got != 3 {
		t.Errorf("Eventually returned %d, want 3", got)
	}
}

func TestPollTimeoutNamesWhatWasAwaitedAndTheLastValue(t *testing.T) {
	t.Parallel()
	_, err := testkit.Poll("queue drained", 20*time.Millisecond, time.Millisecond, func() (int, bool) { return 42, false })
	if err == nil {
		t.Fatal("Poll of a condition that never holds returned nil")
	}
	for _, want := range []string{"queue drained", "42"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Poll error %q does not mention %q", err, want)
		}
	}
}
