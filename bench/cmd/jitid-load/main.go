// Command jitid-load is jitid's benchmark (issue 5): it starts the suite as
// production runs it, drives every workload in closed and open loop from
// 127.0.0.1, prints one table and, with -doc, writes it into
// docs/BENCHMARKS.md. With -soak it runs the soak instead. Run it through
// `make bench` and `make soak`, which build the binaries first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/bench/internal/runner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runner.Main(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jitid-load:", err)
		os.Exit(1)
	}
}
