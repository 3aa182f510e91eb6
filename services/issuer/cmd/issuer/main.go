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
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/grpcserver"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/services/issuer/internal/grpcapi"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/policyclient"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/services/issuer/internal/signing"
	"github.com/jitid/jitid/services/issuer/internal/wellknown"
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
	defer func() { _ = policy.Close() }() // at exit: nothing left to report it to

	keys, err := signing.Load(signing.Options{
		Issuer:       cfg.Issuer,
		Dir:          cfg.KeyDir,
		PublishDelay: cfg.KeyPublishDelay,
		// A removed key verifies every token it signed, on any replica,
		// until the last one expired and left every verifier's leeway.
		Retain: cfg.MaxTTL + credverify.MaxLeeway + cfg.KeyPollInterval,
		Logger: log,
	})
	if err != nil {
		return err
	}

	// The relay and the sweeper get connections of their own: queued behind
	// requests for the request pool's connections, their many round trips
	// would slow to a crawl whenever requests overload the issuer.
	background := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: cfg.RedisAddrs, Password: cfg.RedisPassword, PoolSize: 4})
	defer background.Close()

	events := eventbus.Config{Stream: cfg.Stream, SubjectPrefix: cfg.SubjectPrefix}
	rl := relay.New(background, js, relay.Options{
		Streams: redisstore.OutboxKeys(cfg.KeyPrefix, cfg.Shards),
		Events:  events,
		Source:  eventbus.DefaultSource,
		Logger:  log,
	})
	store := redisstore.New(rdb, redisstore.Options{
		Prefix:      cfg.KeyPrefix,
		Shards:      cfg.Shards,
		Source:      eventbus.DefaultSource,
		Events:      events,
		Logger:      log,
		Notify:      rl.Notify,
		SweepClient: background,
		// A revocation mark hides credentials until they would have expired.
		MarkRetention: cfg.MaxTTL + redisstore.MarkClockMargin,
	})
	iss, err := issuer.New(issuer.Config{
		Issuer:          cfg.Issuer,
		DefaultAudience: cfg.DefaultAudience,
		MaxTTL:          cfg.MaxTTL,
		MaxChainDepth:   cfg.MaxChainDepth,
		Logger:          log,
	}, policy, store, keys)
	if err != nil {
		return err
	}

	srv := grpcserver.New(grpcserver.Options{Name: "issuer", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, Pprof: cfg.Pprof, Logger: base})
	grpcapi.New(iss, log).Register(srv.GRPC())
	srv.Registry().MustRegister(rl.Collectors()...)

	md, err := wellknown.NewMetadata(cfg.Issuer, cfg.PublicURL, cfg.PublicGRPCURL, signing.AlgorithmNames())
	if err != nil {
		return err
	}
	if err := wellknown.Register(srv.HandleAdmin, keys.JWKS, md); err != nil {
		return err
	}
	var public *http.Server
	if cfg.PublicHTTPAddr != "" {
		mux := http.NewServeMux()
		if err := wellknown.Register(mux.Handle, keys.JWKS, md); err != nil {
			return err
		}
		public = &http.Server{Addr: cfg.PublicHTTPAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	if public != nil {
		g.Go(func() error {
			errc := make(chan error, 1)
			go func() { errc <- public.ListenAndServe() }()
			log.Info("serving discovery documents", "addr", cfg.PublicHTTPAddr, "jwks_uri", md.JWKSURI)
			select {
			case err := <-errc:
				return fmt.Errorf("public http: %w", err)
			case <-gctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = public.Shutdown(sctx)
				return nil
			}
		})
	}
	g.Go(func() error { keys.Watch(gctx, cfg.KeyPollInterval); return nil })
	g.Go(func() error {
		// Only the service's own status: the server's overall status ("")
		// stays SERVING so that the process is not restarted for an outage
		// of Redis it can do nothing about.
		svc := issuerv1.IssuerService_ServiceDesc.ServiceName
		store.WatchHealth(gctx, cfg.RedisCheckInterval, func(up bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if up {
				st = healthpb.HealthCheckResponse_SERVING
			}
			srv.Health().SetServingStatus(svc, st)
		})
		return nil
	})
	g.Go(func() error { return rl.Run(gctx) })
	g.Go(func() error { store.RunSweeper(gctx, cfg.SweepInterval); return nil })
	return g.Wait()
}

// redisLogger adapts slog to go-redis's logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}
