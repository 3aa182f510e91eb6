package grpcserver

import (
	"fmt"
	"testing"
	"time"
)

func TestIdleCallersAreEvictedAndTheTableStaysBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	// 10/s with a burst of 20 refills in 2s.
	l := newCallerLimiter(10, 20, 100, func() time.Time { return now })
	for i := range 50 {
		if d := l.wait(fmt.Sprintf("caller-%d", i)); d != 0 {
			t.Fatalf("first call of caller-%d waits %v", i, d)
		}
	}
	if got := l.tracked(); got != 50 {
		t.Fatalf("tracked = %d, want 50", got)
	}
	now = now.Add(3 * time.Second) // every bucket full again
	l.wait("caller-new")
	if got := l.tracked(); got != 1 {
		t.Errorf("after a refill period idle: tracked = %d, want 1 (the idle ones dropped)", got)
	}
	for i := range 1000 {
		l.wait(fmt.Sprintf("burst-%d", i))
		if got := l.tracked(); got > 100 {
			t.Fatalf("tracked = %d after %d new callers, want at most 100", got, i+1)
		}
	}
}

func TestEvictionDoesNotResetAnActiveCallersBucket(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_700_000_000, 0)
	now := start
	// 1/s with a burst of 2 refills in 2s.
	l := newCallerLimiter(1, 2, 100, func() time.Time { return now })
	l.wait("a")
	l.wait("a")
	now = start.Add(1900 * time.Millisecond)
	if d := l.wait("a"); d != 0 {
		t.Fatalf("a after 1.9s at 1/s: waits %v, want a token back", d)
	}
	now = start.Add(2 * time.Second)
	l.wait("b") // a sweep: a was active 100ms ago and stays
	if d := l.wait("a"); d != 0 {
		t.Fatalf("a at 2s: waits %v, want the token that came back", d)
	}
	if d := l.wait("a"); d == 0 {
		t.Error("a's bucket was reset by the sweep: a call beyond its rate went through")
	}
}
