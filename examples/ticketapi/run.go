package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/credverify/issuergrpc"
	"github.com/jitid/jitid/pkg/credverify/natsrevocation"
	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/mtls"
)

// run wires the server and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.logger(stderr)

	creds, closeCreds, err := cfg.issuerCredentials(log)
	if err != nil {
		return err
	}
	defer closeCreds()
	conn, err := grpc.NewClient(cfg.IssuerAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("issuer %s: %w", cfg.IssuerAddr, err)
	}
	defer conn.Close()

	var keys *credverify.RemoteKeys
	switch {
	case cfg.JWKSURL != "":
		keys = credverify.NewRemoteKeys(cfg.JWKSURL, credverify.RemoteKeysOptions{})
		log.Info("signing keys from the JWKS URL", "jwks_url", cfg.JWKSURL)
	case cfg.DiscoverFrom != "":
		md, err := credverify.Discover(ctx, cfg.Issuer, credverify.DiscoverOptions{BaseURL: cfg.DiscoverFrom})
		if err != nil {
			return fmt.Errorf("discover the issuer's keys: %w", err)
		}
		keys = credverify.NewRemoteKeys(md.JWKSURI, credverify.RemoteKeysOptions{})
		log.Info("signing keys from the issuer's metadata", "jwks_url", md.JWKSURI)
	default:
		keys = issuergrpc.NewKeys(conn, credverify.RemoteKeysOptions{})
		log.Info("signing keys from the issuer over gRPC", "issuer_addr", cfg.IssuerAddr)
	}
	if err := keys.Refresh(ctx); err != nil {
		// Not fatal: the issuer may start after this API; keys are
		// fetched again on the first request.
		log.Warn("signing keys not loaded yet", "error", err)
	}

	opts := credverify.Options{
		Issuer:       cfg.Issuer,
		Audience:     cfg.Audience,
		Keys:         keys,
		Introspector: issuergrpc.NewIntrospector(conn, 0),
	}
	var revocations atomic.Bool
	if cfg.NATSURL == "" {
		log.Warn("no -nats-url: revoked credentials are refused only by purchases (online) until they expire")
		revocations.Store(true)
	} else {
		list, stopNATS, err := watchRevocations(ctx, cfg, log, &revocations)
		if err != nil {
			return err
		}
		defer stopNATS()
		opts.Revocations = list
	}
	v, err := credverify.New(opts)
	if err != nil {
		return err
	}

	api := newAPI(v, log, cfg.PublicURL, revocations.Load)
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	log.Info("ticket API listening", "addr", lis.Addr().String(), "issuer", cfg.Issuer, "audience", cfg.Audience)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("ticket API stopped")
	return nil
}

// lateList is a RevocationChecker whose list arrives once NATS and the
// stream are reachable; until then nothing is known revoked, and the API
// says it is not ready.
type lateList struct {
	l atomic.Pointer[natsrevocation.List]
}

func (r *lateList) Revoked(jti string) bool {
	l := r.l.Load()
	return l != nil && l.Revoked(jti)
}

// watchRevocations connects to NATS and follows revocations in the
// background, retrying until the issuer's stream exists; ready is set once
// the replay of past revocations has caught up.
func watchRevocations(ctx context.Context, cfg config, log *slog.Logger, ready *atomic.Bool) (*lateList, func(), error) {
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("ticketapi"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected: revocations arrive when it is back", "error", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }))
	if err != nil {
		return nil, nil, fmt.Errorf("NATS %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	list := &lateList{}
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		events := eventbus.Config{Stream: cfg.Stream, SubjectPrefix: cfg.Subjects}
		for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			l, err := natsrevocation.Watch(wctx, js, natsrevocation.Options{Events: events, Logger: log})
			if err == nil {
				list.l.Store(l)
				select {
				case <-l.Ready():
					ready.Store(true)
					log.Info("revocation list ready", "stream", cfg.Stream)
				case <-wctx.Done():
				}
				return
			}
			log.Warn("revocation list not available yet; retrying", "error", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-wctx.Done():
				return
			}
		}
	}()
	return list, func() { cancel(); nc.Close() }, nil
}

// issuerCredentials are the transport credentials of the issuer client:
// mTLS with this API's SVID files (re-read when they change), talking only
// to -issuer-id; plaintext with -insecure.
func (c config) issuerCredentials(log *slog.Logger) (credentials.TransportCredentials, func(), error) {
	if c.Insecure {
		return insecure.NewCredentials(), func() {}, nil
	}
	authz, err := mtls.ParseAllowList([]string{c.IssuerID})
	if err != nil {
		return nil, nil, fmt.Errorf("-issuer-id: %w", err)
	}
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, BundleFile: c.TLSBundle, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("tls files: %w", err)
	}
	return mtls.ClientCredentials(src, authz), func() { _ = src.Close() }, nil
}
