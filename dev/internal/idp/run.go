package idp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Main runs the provider as the jitid-idp command does: it parses args,
// listens, logs "serving" with the bound address, rotates the signing key
// on every value from rotate, and stops when ctx ends.
func Main(ctx context.Context, args []string, logOut io.Writer, rotate <-chan os.Signal) error {
	fs := flag.NewFlagSet("jitid-idp", flag.ContinueOnError)
	fs.SetOutput(logOut)
	addr := fs.String("http", "127.0.0.1:9400", "listen address (host:port; port 0 picks a free one)")
	issuer := fs.String("issuer", "", "issuer URL (default http://<bound address>)")
	users := fs.String("users", "", "users file (JSON, see package idp)")
	lifetime := fs.Duration("token-lifetime", DefaultTokenLifetime, "life of issued tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *users == "" {
		return errors.New("-users is required")
	}
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	// zitadel/oidc logs each route it registers through the default logger;
	// keep that on the same JSON stream.
	slog.SetDefault(log)

	us, err := LoadUsers(*users)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer lis.Close()
	if *issuer == "" {
		*issuer = "http://" + lis.Addr().String()
	}
	p, err := New(Options{Issuer: *issuer, Users: us, TokenLifetime: *lifetime})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("serving", "http", lis.Addr().String(), "issuer", p.Issuer(), "users", len(us))

	for {
		select {
		case <-rotate:
			kid, err := p.RotateKey()
			if err != nil {
				log.Error("key rotation failed", "err", err)
				continue
			}
			log.Info("rotated signing key", "kid", kid)
		case err := <-errc:
			return err
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(shutdown)
		}
	}
}
