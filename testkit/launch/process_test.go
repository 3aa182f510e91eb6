package launch_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
)

func server(t *testing.T) string {
	t.Helper()
	return gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/testkit", Package: "./launch/testdata/server"})
}

func TestStartReadsTheBoundPortAndRestartKeepsIt(t *testing.T) {
	t.Parallel()
	p := launch.ForTest(t, launch.Service("server", server(t), filepath.Join(t.TempDir(), "server.log"), "-grpc-addr", "127.0.0.1:0"))
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first := p.Addr("grpc")
	if first == "" || strings.HasSuffix(first, ":0") {
		t.Fatalf("Addr(grpc) = %q, want the bound address", first)
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if again := p.Addr("grpc"); again != first {
		t.Errorf("after Restart Addr(grpc) = %q, want %q (clients point there)", again, first)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop() = %v, want a graceful exit", err)
	}
}

func TestStartReportsAnExitBeforeReadyWithTheLog(t *testing.T) {
	t.Parallel()
	p := launch.New(launch.Service("server", server(t), filepath.Join(t.TempDir(), "server.log"), "-fail"))
	err := p.Start(context.Background())
	var exit *launch.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Start() = %v, want an *ExitError", err)
	}
	if !strings.Contains(exit.Tail, "told to fail") {
		t.Errorf("ExitError tail %q lacks the process's output", exit.Tail)
	}
	if p.PID() != 0 {
		t.Errorf("PID() = %d after the process exited, want 0", p.PID())
	}
}
