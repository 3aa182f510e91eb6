package devstack_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/dev/internal/devstack"
	"github.com/jitid/jitid/testkit/localinfra"
)

// TestRefusesWithoutRedisServer: without redis-server (and without
// JITID_REDIS_ADDR) the dev stack starts nothing and says in one line what
// to install, instead of running a stand-in whose Lua lacks what the sweep
// needs (expiry events would never happen).
func TestRefusesWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dataDir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	err := devstack.Main(context.Background(), []string{"-bin-dir", t.TempDir(), "-data-dir", dataDir}, &out,
		func(string) string { return "" })
	if !errors.Is(err, localinfra.ErrRedisNotInstalled) {
		t.Fatalf("Main() = %v, want ErrRedisNotInstalled", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("refusal is more than one line: %q", msg)
	}
	for _, want := range []string{"apt-get install redis-server", "brew install redis"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not name %q", msg, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "nats")); len(entries) > 0 {
		t.Errorf("NATS started before the refusal: %s holds %d entries", filepath.Join(dataDir, "nats"), len(entries))
	}
	if out.Len() > 0 {
		t.Errorf("output before the refusal: %q", out.String())
	}
}
