package testkit

import (
	"fmt"
	"testing"
	"time"
)

// Eventually calls observe every interval until it reports done, and
// returns the value it observed then. After timeout it fails the test with
// what was awaited and the last value observed, so that a timeout says how
// far the system got instead of only that it did not get there.
func Eventually[T any](t testing.TB, what string, timeout, interval time.Duration, observe func() (T, bool)) T {
	t.Helper()
	v, err := Poll(what, timeout, interval, observe)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Poll is Eventually for code that is not a test (the benchmark suite, the
// dev stack): it returns an error instead of failing a test.
func Poll[T any](what string, timeout, interval time.Duration, observe func() (T, bool)) (T, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		v, done := observe()
		if done {
			return v, nil
		}
		if !time.Now().Before(deadline) {
			return v, fmt.Errorf("timed out after %v waiting for %s; last observed: %+v", timeout, what, v)
		}
		<-tick.C
	}
}
