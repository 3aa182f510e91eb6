package launch

import (
	"strings"
	"testing"
)

// ForTest returns a Process for s, not started, that is stopped when the
// test ends. A stop that is not graceful fails the test, and so does a
// data race or a panic in the log; the log tail goes to t.Log when the
// test failed.
func ForTest(t testing.TB, s Spec) *Process {
	t.Helper()
	p := New(s)
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		// Binaries built with -race report races on their stderr.
		if log := p.Log(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race; see %s", p.Name(), p.LogPath())
		} else if strings.Contains(log, "\npanic: ") || strings.HasPrefix(log, "panic: ") {
			t.Errorf("%s panicked; see %s", p.Name(), p.LogPath())
		}
		if t.Failed() {
			t.Logf("--- %s log (tail) %s ---\n%s", p.Name(), p.LogPath(), Tail(p.LogPath(), 60))
		}
	})
	return p
}
