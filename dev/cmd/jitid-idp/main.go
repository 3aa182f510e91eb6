// Command jitid-idp runs the demo OpenID Provider of package idp: it issues
// ID tokens and JWT access tokens for the users of a JSON file through the
// client-credentials grant, each client being bound to one user. SIGHUP
// rotates the signing key. It is for the demo stack and tests, not
// production.
//
//	jitid-idp -users dev/cmd/jitid-idp/demo-users.json -http 127.0.0.1:0
//	curl -u demo-alice:demo-alice-secret -d grant_type=client_credentials \
//	     -d scope=openid http://127.0.0.1:PORT/oauth/token
//
// demo-users.json holds two demo users: alice (finance, two factors,
// age_verified) and bob (staff, password only). Their secrets are demo
// values, public in this repository.
//
// Once listening it logs one JSON line with msg "serving" and the bound
// address in "http", like the jitid services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jitid/jitid/dev/internal/idp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err := idp.Main(ctx, os.Args[1:], os.Stderr, hup)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "jitid-idp:", err)
		os.Exit(1)
	}
}
