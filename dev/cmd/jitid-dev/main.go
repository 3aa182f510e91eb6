// Command jitid-dev runs the whole jitid suite on one machine, in the
// foreground, the way production runs it: every link on mutual TLS with
// SPIFFE IDs from a local CA, and a demo OpenID Provider for the delegators'
// subject tokens. It starts a NATS server with JetStream and a Redis (unless
// JITID_NATS_URL / JITID_REDIS_ADDR point at running ones), then the
// policy, issuer and audit binaries, and prints the exact client flags.
// Ctrl-C stops everything. It is what `make run` starts; production runs
// each service on its own.
//
//	jitid-dev [-bin-dir bin] [-data-dir .jitid]   the suite
//	jitid-dev pki [-dir .jitid/pki] [-trust-domain jitid.local]
//	                                              only the CA and SVIDs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/dev/internal/devpki"
	"github.com/jitid/jitid/dev/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "pki" {
		err = devpki.Main(os.Args[2:], os.Stdout)
	} else {
		err = devstack.Main(ctx, os.Args[1:], os.Stdout, os.Getenv)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jitid-dev:", err)
		stop()
		os.Exit(1)
	}
}
