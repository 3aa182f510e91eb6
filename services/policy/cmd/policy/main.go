// Command policy is jitid's policy decision point: a gRPC service (and an
// AuthZEN HTTP endpoint) that evaluates issuance requests against a Cedar
// policy set, plus the tools around it: policy test, check and replay.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/services/policy/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Main(ctx, cli.Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, LookupEnv: os.LookupEnv})
	stop()
	os.Exit(code)
}
