// Package app is the issuer's composition root: from a checked Config it
// builds the clients (Redis, NATS, policy), the signing keys, the domain
// service and its servers, and runs them together. main and the tests
// start the issuer the same way, through New and Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/mtls"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/pkg/storeauth"
	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/services/issuer/internal/grpcapi"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/policyclient"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/services/issuer/internal/signing"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
	"github.com/jitid/jitid/services/issuer/internal/wellknown"
)

// Name is the service name in logs and -version.
const Name = "issuer"

// PublicHTTPListener names the listener of -public-http-addr in the
// "serving" log line.
const PublicHTTPListener = "public_http"

// App is a wired issuer, its listeners open, ready to Run.
type App struct {
	cfg        config.Config
	log        *slog.Logger
	srv        *grpcserver.Server
	store      *redisstore.Store
	relay      *relay.Relay
	keys       *signing.KeySet
	redisReady *grpcserver.Dependency
	closers    []func() error
}

// Main is the issuer command: it loads the configuration from env and
// serves until ctx ends.
func Main(ctx context.Context, env servicecmd.Env) error {
	cfg, err := config.Load(env.Args, env.LookupEnv, env.Stderr)
	if err != nil {
		return err
	}
	a, err := New(ctx, cfg, cfg.Logger(env.Stderr))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New wires the issuer and opens its listeners: a port already taken fails
// here, with the bind error. Nothing runs until Run.
func New(ctx context.Context, cfg config.Config, base *slog.Logger) (*App, error) {
	log := base.With("service", Name)
	a := &App{cfg: cfg, log: log}
	wired := false
	defer func() {
		if !wired {
			a.close()
		}
	}()
	// go-redis logs through a package-level logger; route it to ours so
	// every line is structured.
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})

	ropts, err := RedisOptions(cfg)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(&ropts)
	a.closers = append(a.closers, rdb.Close)
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		// Not fatal: calls answer UNAVAILABLE until Redis is back.
		log.Warn("redis unreachable at start", "addrs", cfg.RedisAddrs, "error", err)
	}
	cancel()

	// The issuer starts and issues while NATS is down: events wait in the
	// Redis outbox until the relay can publish them.
	auth, err := cfg.NATSAuth.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.NATSURL, append(auth,
		nats.Name("jitid-issuer"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats connected", "url", c.ConnectedUrlRedacted()) }),
	)...)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	a.closers = append(a.closers, func() error { nc.Close(); return nil })
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(relay.DefaultPublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}

	tlsc, err := cfg.OpenTLS(ctx, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, tlsc.Close)
	callers, err := cfg.OpenCallers(ctx, Name, log, tlsc)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, callers.Close)
	popts := policyclient.Options{Addr: cfg.PolicyAddr, Timeout: cfg.PolicyTimeout}
	if tlsc != nil {
		creds, err := tlsc.ClientCredentials(cfg.PolicyID)
		if err != nil {
			return nil, fmt.Errorf("policy-id: %w", err)
		}
		popts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	}
	policy, err := policyclient.New(popts)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, policy.Close)

	a.keys, err = signing.Load(signing.Options{
		Issuer:       cfg.Issuer,
		Dir:          cfg.KeyDir,
		PublishDelay: cfg.KeyPublishDelay,
		// A removed key verifies every token it signed, on any replica,
		// until the last one expired and left every verifier's leeway.
		Retain: cfg.MaxTTL + credverify.MaxLeeway + cfg.KeyPollInterval,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}

	// The relay and the sweeper get connections of their own: queued behind
	// requests for the request pool's connections, their many round trips
	// would slow to a crawl whenever requests overload the issuer.
	bopts := ropts
	bopts.PoolSize = 4
	background := redis.NewUniversalClient(&bopts)
	a.closers = append(a.closers, background.Close)

	events := eventbus.Config{Stream: cfg.Stream, SubjectPrefix: cfg.SubjectPrefix}
	a.relay = relay.New(background, js, relay.Options{
		Streams: redisstore.OutboxKeys(cfg.KeyPrefix, cfg.Shards),
		Events:  events,
		Source:  eventbus.DefaultSource,
		Logger:  log,
	})
	a.store = redisstore.New(rdb, redisstore.Options{
		Prefix:      cfg.KeyPrefix,
		Shards:      cfg.Shards,
		Source:      eventbus.DefaultSource,
		Events:      events,
		Logger:      log,
		Notify:      a.relay.Notify,
		SweepClient: background,
		// A revocation mark hides credentials until they would have expired.
		MarkRetention:  cfg.MaxTTL + redisstore.MarkClockMargin,
		DelegatorQuota: cfg.DelegatorQuota,
	})
	self, err := selfID(ctx, cfg)
	if err != nil {
		return nil, err
	}
	icfg := issuer.Config{
		Issuer:          cfg.Issuer,
		DefaultAudience: cfg.DefaultAudience,
		MaxTTL:          cfg.MaxTTL,
		MaxChainDepth:   cfg.MaxChainDepth,
		Logger:          log,
		Admins:          cfg.Admins,
		ResourceServers: cfg.ResourceServers,
		Self:            self,
	}
	if cfg.SubjectTokens != nil {
		// No request is made here: each provider is discovered on its
		// first token, so that the issuer starts while a provider is down.
		v, err := subjecttoken.New(*cfg.SubjectTokens)
		if err != nil {
			return nil, err
		}
		icfg.SubjectTokens = v
		issuers := make([]string, len(cfg.SubjectTokens.Providers))
		for i, p := range cfg.SubjectTokens.Providers {
			issuers[i] = p.Issuer
		}
		log.Info("subject tokens trusted", "providers", issuers)
	} else {
		log.Info("no identity provider trusted (-idp-config): every delegator must be asserted by a platform policy permits")
	}
	iss, err := issuer.New(icfg, policy, a.store, a.keys)
	if err != nil {
		return nil, err
	}

	a.srv = grpcserver.New(cfg.ServerOptions(Name, base, tlsc, callers))
	grpcapi.New(iss, log).Register(a.srv.GRPC())
	a.srv.Registry().MustRegister(a.relay.Collectors()...)
	a.redisReady = a.srv.Readiness().Add("redis", true)

	md, err := wellknown.NewMetadata(cfg.Issuer, cfg.PublicURL, cfg.PublicGRPCURL, signing.AlgorithmNames())
	if err != nil {
		return nil, err
	}
	if err := wellknown.Register(a.srv.HandleAdmin, a.keys.JWKS, md); err != nil {
		return nil, err
	}
	if cfg.PublicHTTPAddr != "" {
		mux := http.NewServeMux()
		if err := wellknown.Register(mux.Handle, a.keys.JWKS, md); err != nil {
			return nil, err
		}
		a.srv.AddHTTP(PublicHTTPListener, cfg.PublicHTTPAddr, mux)
	}
	if err := a.srv.Listen(); err != nil {
		return nil, err
	}
	wired = true
	return a, nil
}

// Server returns the gRPC and admin server, for its bound addresses.
func (a *App) Server() *grpcserver.Server { return a.srv }

// Run serves until ctx ends: the gRPC server, the outbox relay, the expiry
// sweeper, the key directory watch and the Redis readiness check run
// together, and the first to fail stops the others. Run releases the
// clients before it returns.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.srv.Run(gctx) })
	g.Go(func() error { a.keys.Watch(gctx, a.cfg.KeyPollInterval); return nil })
	g.Go(func() error {
		// Only readiness: liveness (/healthz) stays up, so that the
		// process is not restarted for an outage of Redis it can do
		// nothing about.
		a.store.WatchHealth(gctx, a.cfg.RedisCheckInterval, func(up bool) {
			if up {
				a.redisReady.Set(nil)
				return
			}
			a.redisReady.Set(fmt.Errorf("redis %v does not answer", a.cfg.RedisAddrs))
		})
		return nil
	})
	g.Go(func() error { return a.relay.Run(gctx) })
	g.Go(func() error { a.store.RunSweeper(gctx, a.cfg.SweepInterval); return nil })
	return g.Wait()
}

func (a *App) close() {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	if err := errors.Join(errs...); err != nil {
		a.log.Debug("closing clients", "error", err)
	}
}

// redisLogger adapts slog to go-redis's logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// RedisOptions returns the go-redis options of cfg: addresses, the ACL user
// and the password read from -redis-password-file, and TLS. Errors name
// the files, never the password.
func RedisOptions(cfg config.Config) (redis.UniversalOptions, error) {
	o := redis.UniversalOptions{Addrs: cfg.RedisAddrs, Username: cfg.RedisUsername}
	if cfg.RedisPasswordFile != "" {
		pw, err := storeauth.ReadSecretFile(cfg.RedisPasswordFile)
		if err != nil {
			return redis.UniversalOptions{}, fmt.Errorf("redis-password-file: %w", err)
		}
		o.Password = pw
	}
	tc, err := cfg.RedisTLS.Config()
	if err != nil {
		return redis.UniversalOptions{}, fmt.Errorf("redis-tls: %w", err)
	}
	o.TLSConfig = tc
	return o, nil
}

// selfID is the caller the issuer's own events (expired) name: its SPIFFE
// ID, read from its certificate file or its SVID from the Workload API,
// when on TLS; issuer.DefaultSelf in plaintext.
func selfID(ctx context.Context, cfg config.Config) (string, error) {
	switch {
	case !cfg.TLSEnabled():
		return issuer.DefaultSelf, nil
	case cfg.SPIFFESocket != "":
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		src, err := mtls.NewWorkloadSource(ctx, mtls.WorkloadConfig{Addr: cfg.SPIFFESocket})
		if err != nil {
			return "", fmt.Errorf("spiffe workload api: %w", err)
		}
		defer func() { _ = src.Close() }()
		svid, err := src.GetX509SVID()
		if err != nil {
			return "", fmt.Errorf("spiffe workload api: %w", err)
		}
		return svid.ID.String(), nil
	default:
		src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, BundleFile: cfg.TLSBundle})
		if err != nil {
			return "", fmt.Errorf("tls files: %w", err)
		}
		defer func() { _ = src.Close() }()
		svid, err := src.GetX509SVID()
		if err != nil {
			return "", fmt.Errorf("tls files: %w", err)
		}
		return svid.ID.String(), nil
	}
}
