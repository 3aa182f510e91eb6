package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/services/policy/internal/authzen"
	"github.com/jitid/jitid/services/policy/internal/config"
	"github.com/jitid/jitid/services/policy/internal/grpcapi"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/policymetrics"
	"github.com/jitid/jitid/services/policy/policies"
)

// ReloadHealthService is the gRPC health service name that is NOT_SERVING
// while the policy files on disk fail to load (the last good set is still
// served, so the service itself stays SERVING).
const ReloadHealthService = "jitid.policy.v1.PolicySetReload"

func loadSet(path string) (*policy.Set, error) {
	if path == "" {
		return policy.LoadFS(policies.Default(), policies.Source)
	}
	return policy.Load(path)
}

func serve(ctx context.Context, env Env, args []string) error {
	cfg, err := config.Load(args, env.Getenv)
	if err != nil {
		return err
	}
	log := cfg.Logger(env.Stderr)
	set, err := loadSet(cfg.PolicyFile)
	if err != nil {
		return fmt.Errorf("load policy set: %w", err)
	}
	srv := grpcserver.New(grpcserver.Options{Name: "policy", GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, Pprof: cfg.Pprof, Logger: log})
	hs := srv.Health()
	engine := policy.NewEngine(set, policy.EngineOptions{Logger: log, OnReload: func(st policy.Status) {
		s := healthpb.HealthCheckResponse_SERVING
		if st.LastError != nil {
			s = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus(ReloadHealthService, s)
	}})
	hs.SetServingStatus(ReloadHealthService, healthpb.HealthCheckResponse_SERVING)
	if err := policymetrics.Register(srv.Registry(), engine); err != nil {
		return err
	}
	grpcapi.Register(srv.GRPC(), hs, grpcapi.New(engine, log))
	srv.HandleAdmin("/policyz", StatusHandler(engine))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	if cfg.PolicyFile != "" {
		g.Go(func() error {
			policy.NewReloader(engine, cfg.PolicyFile, cfg.ReloadInterval).Run(ctx)
			return nil
		})
	}
	if cfg.AuthZENAddr != "" {
		lis, err := net.Listen("tcp", cfg.AuthZENAddr)
		if err != nil {
			return fmt.Errorf("authzen listen: %w", err)
		}
		g.Go(func() error { return serveHTTP(ctx, lis, authzen.New(engine, log), log) })
	}
	g.Go(func() error {
		defer cancel()
		return srv.Run(ctx)
	})
	return g.Wait()
}

func serveHTTP(ctx context.Context, lis net.Listener, h http.Handler, log *slog.Logger) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	// ctx is done when the shutdown starts: it needs a deadline of its own.
	go func() { //nolint:gosec // G118: see above
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	log.Info("authzen endpoint listening", "addr", lis.Addr().String())
	if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("authzen: %w", err)
	}
	return nil
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
