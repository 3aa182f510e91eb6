// Package app is the policy service's composition root: from a checked
// Config it loads the policy set, builds the engine, the gRPC service, the
// AuthZEN endpoint and the admin pages, and runs them with the reloader.
// `policy serve` and the tests start the service the same way, through New
// and Run.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/services/policy/internal/access"
	"github.com/jitid/jitid/services/policy/internal/authzen"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/services/policy/internal/grpcapi"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/policymetrics"
	"github.com/jitid/jitid/services/policy/policies"
)

// Name is the service name in logs and -version.
const Name = "policy"

// AuthZENListener names the listener of -authzen-addr in the "serving" log
// line.
const AuthZENListener = "authzen"

// ReloadHealthService is the gRPC health service name that is NOT_SERVING
// while the policy files on disk fail to load (the last good set is still
// served, so the service itself stays SERVING). The readiness check
// "policy_set" reports the same, without making the server not ready.
const ReloadHealthService = "jitid.policy.v1.PolicySetReload"

// LoadSet loads the policy set at path, or the built-in default set when
// path is empty.
func LoadSet(path string) (*policy.Set, error) {
	if path == "" {
		return policy.LoadFS(policies.Default(), policies.Source)
	}
	return policy.Load(path)
}

// App is a wired policy service, its listeners open, ready to Run.
type App struct {
	cfg     config.Config
	srv     *grpcserver.Server
	engine  *policy.Engine
	tls     *servicecmd.TLS
	callers *servicecmd.Callers
}

// New loads the policy set, wires the service and opens its listeners: a
// port already taken fails here, with the bind error. Nothing runs until
// Run.
func New(cfg config.Config, base *slog.Logger) (*App, error) {
	log := base.With("service", Name)
	set, err := LoadSet(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("load policy set: %w", err)
	}
	tlsc, err := cfg.OpenTLS(context.Background(), log)
	if err != nil {
		return nil, err
	}
	callers, err := cfg.OpenCallers(context.Background(), Name, log, tlsc)
	if err != nil {
		_ = tlsc.Close() // the caller settings' error is the one worth reporting
		return nil, err
	}
	srv := grpcserver.New(cfg.ServerOptions(Name, base, tlsc, callers))
	setReady := srv.Readiness().Add("policy_set", false)
	setReady.Set(nil)
	hs := srv.Health()
	engine := policy.NewEngine(set, policy.EngineOptions{Logger: log, OnReload: func(st policy.Status) {
		s := healthpb.HealthCheckResponse_SERVING
		if st.LastError != nil {
			s = healthpb.HealthCheckResponse_NOT_SERVING
			setReady.Set(fmt.Errorf("the files on disk do not load (the last good set is served): %w", st.LastError))
		} else {
			setReady.Set(nil)
		}
		hs.SetServingStatus(ReloadHealthService, s)
	}})
	hs.SetServingStatus(ReloadHealthService, healthpb.HealthCheckResponse_SERVING)
	if err := policymetrics.Register(srv.Registry(), engine); err != nil {
		return nil, err
	}
	rules := access.Rules{Evaluators: cfg.Evaluators, Admins: cfg.Admins}
	if tlsc == nil {
		log.Warn("no TLS: no call has an authenticated caller, so Evaluate, Explain, GetPolicySet and AuthZEN answer UNAUTHENTICATED; run with -tls-* or -spiffe-socket")
	} else if len(cfg.Evaluators)+len(cfg.Admins) == 0 {
		log.Warn("no -evaluators and no -admins: nobody may call Evaluate, Explain or AuthZEN; give the issuer's SPIFFE ID in -evaluators")
	}
	grpcapi.New(engine, log, rules).Register(srv.GRPC())
	srv.HandleAdmin("/policyz", StatusHandler(engine))
	if cfg.AuthZENAddr != "" {
		h := authzen.New(engine, log, authzen.Options{Rules: rules})
		if tlsc != nil {
			// The same certificate source and client allow-list as gRPC;
			// the caller is the client certificate's SPIFFE ID.
			srv.AddHTTPS(AuthZENListener, cfg.AuthZENAddr, h, tlsc.ServerTLSConfig())
		} else {
			srv.AddHTTP(AuthZENListener, cfg.AuthZENAddr, h)
		}
	}
	if err := srv.Listen(); err != nil {
		_ = tlsc.Close() // the bind error is the one worth reporting
		_ = callers.Close()
		return nil, err
	}
	return &App{cfg: cfg, srv: srv, engine: engine, tls: tlsc, callers: callers}, nil
}

// Server returns the gRPC and admin server, for its bound addresses.
func (a *App) Server() *grpcserver.Server { return a.srv }

// Run serves until ctx ends, reloading -policy-file when it changes.
func (a *App) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if a.cfg.PolicyFile != "" {
		g.Go(func() error {
			policy.NewReloader(a.engine, a.cfg.PolicyFile, a.cfg.ReloadInterval).Run(gctx)
			return nil
		})
	}
	g.Go(func() error { return a.srv.Run(gctx) })
	err := g.Wait()
	_ = a.tls.Close() // the server has stopped; nothing uses the certificates
	_ = a.callers.Close()
	return err
}

// StatusHandler serves the policy set's state as JSON on the admin server
// (/policyz): version in use, source, schema, and the last reload error.
// It answers 200 while the last good set is served and says "degraded"
// when the files on disk do not load.
func StatusHandler(engine *policy.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := engine.Status()
		body := map[string]any{
			"status":          "ok",
			"version":         st.Set.Version(),
			"source":          st.Set.Source(),
			"schema":          st.Set.Schema(),
			"policies":        len(st.Set.PolicyIDs()),
			"loaded_at":       st.LoadedAt.UTC().Format(time.RFC3339),
			"reload_failures": st.ReloadFailures,
		}
		if st.LastError != nil {
			body["status"] = "degraded"
			body["last_error"] = st.LastError.Error()
			body["last_error_at"] = st.LastErrAt.UTC().Format(time.RFC3339)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
}
