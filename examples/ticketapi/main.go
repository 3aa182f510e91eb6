// Command ticketapi is an example resource server protected by jitid
// credentials: a small ticket API whose reads are verified offline (the
// issuer's JWKS plus the revocation list pushed over NATS) and whose
// purchases are also checked online with the issuer. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ticketapi:", err)
		os.Exit(1)
	}
}
