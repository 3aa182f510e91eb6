// Command issuer serves jitid.issuer.v1.IssuerService: it asks policy,
// mints task-scoped credentials, keeps them in Redis with their lifecycle
// events in an outbox, relays the events to NATS JetStream and reports
// expiries. Flags and JITID_* variables: docs/configuration.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/services/issuer/internal/grpcapi"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/policyclient"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "issuer:", err)
		os.Exit(1)
	}
}

// run wires the issuer and serves until ctx ends: the gRPC server, the
// outbox relay and the expiry sweeper run together, and the first to fail
// stops the others.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	base := cfg.Logger(stderr)
	log := base.With("service", "issuer")
	// go-redis logs through a package-level logger; route it to ours so
	// every line is structured.
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})

	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: cfg.RedisAddrs, Password: cfg.RedisPassword})
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		// Not fatal: calls answer UNAVAILABLE until Redis is back.
		log.Warn("redis unreachable at start", "addrs", cfg.RedisAddrs, "error", err)
	}
	cancel()

	// The issuer starts and issues while NATS is down: events wait in the
	// Redis outbox until the relay can publish them.
	nc, err := nats.Connect(cfg.NATSURL,
		nats.Name("jitid-issuer"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats connected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(relay.DefaultPublishTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	policy, err := policyclient.New(policyclient.Options{Addr: cfg.PolicyAddr, Timeout: cfg.PolicyTimeout})
	if err != nil {
		return err
	}
	defer policy.Close()

	keys, err := signing.Load(signing.Options{Issuer: cfg.Issuer, Dir: cfg.KeyDir, Logger: log})
	if err != nil {
		return err
	}

	events := eventbus.Config{Stream: cfg.Stream, SubjectPrefix: cfg.SubjectPrefix}
	rl := relay.New(rdb, js, relay.Options{
		Streams: redisstore.OutboxKeys(cfg.KeyPrefix, cfg.Shards),
		Events:  events,
		Logger:  log,
	})
	store := redisstore.New(rdb, redisstore.Options{
		Prefix: cfg.KeyPrefix,
		Shards: cfg.Shards,
		Source: eventbus.DefaultSource,
		Events: events,
		Logger: log,
		Notify: rl.Notify,
	})
	iss, err := issuer.New(issuer.Config{
		Issuer:          cfg.Issuer,
		DefaultAudience: cfg.DefaultAudience,
		MaxTTL:          cfg.MaxTTL,
		Logger:          log,
	}, policy, store, keys)
	if err != nil {
		return err
	}

	srv := grpcserver.New(grpcserver.Options{Name: "issuer", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, Logger: base})
	grpcapi.New(iss, log).Register(srv.GRPC())
	srv.Registry().MustRegister(rl.Collectors()...)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return rl.Run(gctx) })
	g.Go(func() error { store.RunSweeper(gctx, cfg.SweepInterval); return nil })
	return g.Wait()
}

// redisLogger adapts slog to go-redis's logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}
