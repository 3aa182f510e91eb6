// Package app is the audit service's composition root: from a checked
// Config it opens the store, connects to NATS, builds the service, its
// consumer and its server, and runs them together. main and the tests
// start the audit service the same way, through New and Run.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/config"
	"github.com/jitid/jitid/services/audit/internal/grpcapi"
	"github.com/jitid/jitid/services/audit/internal/natsconsumer"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
)

// Name is the service name in logs and -version.
const Name = "audit"

// App is a wired audit service, its listeners open, ready to Run.
type App struct {
	log        *slog.Logger
	srv        *grpcserver.Server
	store      *sqlstore.Store
	nc         *nats.Conn
	consumer   *natsconsumer.Consumer
	storeReady *grpcserver.Dependency
	tls        *servicecmd.TLS
	callers    *servicecmd.Callers
}

// Main is the audit command: it loads the configuration from env and
// serves until ctx ends.
func Main(ctx context.Context, env servicecmd.Env) error {
	cfg, err := config.Load(env.Args, env.LookupEnv, env.Stderr)
	if err != nil {
		return err
	}
	a, err := New(cfg, cfg.Logger(env.Stderr))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// New wires the audit service and opens its listeners: a port already
// taken fails here, with the bind error. Nothing runs until Run.
func New(cfg config.Config, base *slog.Logger) (*App, error) {
	log := base.With("service", Name)
	st, err := sqlstore.Open(cfg.AuditDSN)
	if err != nil {
		return nil, err
	}
	a := &App{log: log, store: st}
	fail := func(err error) (*App, error) {
		if a.nc != nil {
			a.nc.Close()
		}
		_ = st.Close()
		_ = a.tls.Close() // the error being returned is the one worth reporting
		_ = a.callers.Close()
		return nil, err
	}
	svc := audit.New(st, audit.Options{Logger: log})

	if a.tls, err = cfg.OpenTLS(context.Background(), log); err != nil {
		return fail(err)
	}
	if a.callers, err = cfg.OpenCallers(context.Background(), Name, log, a.tls); err != nil {
		return fail(err)
	}
	a.srv = grpcserver.New(cfg.ServerOptions(Name, base, a.tls, a.callers))
	if len(cfg.Readers()) == 0 {
		log.Warn("nobody may read the audit log: give -auditors or -admins")
	}
	grpcapi.New(svc, log, grpcapi.Options{Readers: cfg.Readers()}).Register(a.srv.GRPC())
	a.storeReady = a.srv.Readiness().Add("store", true)

	auth, err := cfg.NATSAuth.Options()
	if err != nil {
		return fail(err)
	}
	a.nc, err = natsconsumer.Connect(cfg.NATSURL, log, auth...)
	if err != nil {
		return fail(err)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fail(fmt.Errorf("jetstream: %w", err))
	}
	a.consumer, err = natsconsumer.New(js, svc, natsconsumer.Options{
		Bus: cfg.EventBus(), Durable: cfg.Consumer, AckWait: cfg.AckWait, Logger: log, Registerer: a.srv.Registry(),
	})
	if err != nil {
		return fail(err)
	}
	if err := a.srv.Listen(); err != nil {
		return fail(err)
	}
	return a, nil
}

// Server returns the gRPC and admin server, for its bound addresses.
func (a *App) Server() *grpcserver.Server { return a.srv }

// Run serves until ctx ends. The server answers (NOT_SERVING, the store
// not ready) while the store comes up; the consumer starts only once there
// is somewhere to put events. Run closes the store and the NATS connection
// before it returns.
func (a *App) Run(ctx context.Context) error {
	defer func() {
		// Run's error is the server's; a store that fails to close is
		// worth a line in the log, not a failed run.
		if err := a.store.Close(); err != nil {
			a.log.Warn("audit store not closed cleanly", "err", err)
		}
	}()
	defer a.nc.Close()
	defer func() { _ = a.tls.Close() }() // nothing left to fail once the server stopped
	defer func() { _ = a.callers.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.storeReady.Set(fmt.Errorf("%s store: schema not initialised yet", a.store.Backend()))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.store.InitRetry(ctx, a.log, 5*time.Second); err != nil {
			return
		}
		a.log.Info("audit store open", "backend", a.store.Backend())
		a.storeReady.Set(nil)
		_ = a.consumer.Run(ctx)
	})
	err := a.srv.Run(ctx)
	cancel()
	wg.Wait()
	return err
}
