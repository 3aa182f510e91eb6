// Command jitid-dev runs the whole jitid suite on one machine, in the
// foreground: a NATS server with JetStream and a Redis (unless
// JITID_NATS_URL / JITID_REDIS_ADDR point at running ones), then the policy,
// issuer and audit binaries. Ctrl-C stops everything. It is what `make run`
// starts; production runs each service on its own.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/dev/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devstack.Main(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "jitid-dev:", err)
		os.Exit(1)
	}
}
