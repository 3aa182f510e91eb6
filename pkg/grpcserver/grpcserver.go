// Package grpcserver is the wiring every jitid server shares: a gRPC server
// with one interceptor chain (logging, metrics, recovery), gRPC health and
// server reflection, an admin HTTP server for metrics and health, and a Run
// that stops both gracefully when its context ends (SIGTERM in main).
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Options configure a Server.
type Options struct {
	// Name is the service name, used in logs and metrics (e.g. "issuer").
	Name string
	// GRPCAddr is the gRPC listen address, e.g. "127.0.0.1:50051".
	GRPCAddr string
	// AdminAddr is the admin HTTP listen address; empty disables it.
	AdminAddr string
	Logger    *slog.Logger
	// ShutdownTimeout bounds the graceful stop; 10s when zero.
	ShutdownTimeout time.Duration
	// ServerOptions are added after the interceptor chain.
	ServerOptions []grpc.ServerOption
	// Pprof serves the Go runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin server. Profiles show code paths and
	// memory, never request contents, but they are for operators: keep
	// the admin address private when it is on.
	Pprof bool
}

// Server is a gRPC server and its admin HTTP server.
type Server struct {
	opts     Options
	log      *slog.Logger
	grpc     *grpc.Server
	health   *health.Server
	registry *prometheus.Registry
	mux      *http.ServeMux
	grpcLis  net.Listener
	adminLis net.Listener
}

// New returns a Server with health and reflection registered. Listeners are
// opened by Listen or Run.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handled := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "jitid",
		Name:      "grpc_server_handling_seconds",
		Help:      "Time to handle a gRPC call, by method and status code.",
		Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"service", "method", "code"})
	reg.MustRegister(handled)
	log := opts.Logger.With("service", opts.Name)
	chain := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(
			unaryLogging(log, opts.Name, handled),
			unaryRecovery(log),
		),
		grpc.ChainStreamInterceptor(
			streamLogging(log, opts.Name, handled),
			streamRecovery(log),
		),
	}
	gs := grpc.NewServer(append(chain, opts.ServerOptions...)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s := &Server{opts: opts, log: log, grpc: gs, health: hs, registry: reg, mux: http.NewServeMux()}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	if opts.Pprof {
		s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return s
}

// GRPC returns the gRPC server to register services on.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Health returns the health server; set a service NOT_SERVING while a
// dependency it needs is down.
func (s *Server) Health() *health.Server { return s.health }

// Registry returns the Prometheus registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// HandleAdmin adds a handler to the admin HTTP server.
func (s *Server) HandleAdmin(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	resp, err := s.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, "not serving", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Listen opens the listeners, so that an address of port 0 is known
// (GRPCAddress) before Run.
func (s *Server) Listen() error {
	if s.grpcLis == nil {
		lis, err := net.Listen("tcp", s.opts.GRPCAddr)
		if err != nil {
			return fmt.Errorf("grpc listen %s: %w", s.opts.GRPCAddr, err)
		}
		s.grpcLis = lis
	}
	if s.adminLis == nil && s.opts.AdminAddr != "" {
		lis, err := net.Listen("tcp", s.opts.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", s.opts.AdminAddr, err)
		}
		s.adminLis = lis
	}
	return nil
}

// GRPCAddress returns the bound gRPC address after Listen.
func (s *Server) GRPCAddress() string {
	if s.grpcLis == nil {
		return s.opts.GRPCAddr
	}
	return s.grpcLis.Addr().String()
}

// AdminAddress returns the bound admin address after Listen.
func (s *Server) AdminAddress() string {
	if s.adminLis == nil {
		return s.opts.AdminAddr
	}
	return s.adminLis.Addr().String()
}

// Run serves until ctx ends, then stops gracefully: health turns NOT_SERVING,
// in-flight calls finish (bounded by ShutdownTimeout) and Run returns nil.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	var admin *http.Server
	if s.adminLis != nil {
		admin = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := admin.Serve(s.adminLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	s.log.Info("serving", "grpc", s.GRPCAddress(), "admin", s.AdminAddress())
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(s.opts.ShutdownTimeout):
		s.log.Warn("graceful stop timed out; closing connections")
		s.grpc.Stop()
	}
	if admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		_ = admin.Shutdown(sctx)
	}
	s.log.Info("stopped")
	return runErr
}

func unaryLogging(log *slog.Logger, service string, h *prometheus.HistogramVec) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		observe(ctx, log, service, h, info.FullMethod, start, err)
		return resp, err
	}
}

func streamLogging(log *slog.Logger, service string, h *prometheus.HistogramVec) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		observe(ss.Context(), log, service, h, info.FullMethod, start, err)
		return err
	}
}

func observe(ctx context.Context, log *slog.Logger, service string, h *prometheus.HistogramVec, method string, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	h.WithLabelValues(service, method, code.String()).Observe(elapsed.Seconds())
	if method == healthpb.Health_Check_FullMethodName || method == healthpb.Health_Watch_FullMethodName {
		return
	}
	level := slog.LevelDebug
	switch code {
	case codes.OK, codes.Canceled:
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	// Only the method, code and status message are logged: requests and
	// responses may hold tokens, which never reach a log.
	log.Log(ctx, level, "grpc call", "method", method, "code", code.String(),
		"duration_ms", float64(elapsed.Microseconds())/1000, "error", status.Convert(err).Message())
}

func unaryRecovery(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}

func streamRecovery(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(srv, ss)
	}
}
