// Package grpcserver is the wiring every jitid server shares: a gRPC server
// with one interceptor chain (metrics, logging, an authentication slot,
// recovery), gRPC health that follows a registry of named dependencies,
// server reflection, an admin HTTP server (/metrics, /healthz liveness,
// /readyz readiness, pprof on request), any further HTTP listeners of the
// service, and a Run that stops them all gracefully when its context ends
// (SIGTERM in main).
//
// When it starts serving, a Server logs one line with msg "serving" and the
// bound addresses: attribute "grpc" and "admin" (empty when off), and one
// more "serving" line per further listener, its attribute named after it.
// A launcher that passes port 0 reads the ports back from these lines.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
)

// Options configure a Server.
type Options struct {
	// Name is the service name, used in logs (e.g. "issuer").
	Name string
	// GRPCAddr is the gRPC listen address, e.g. "127.0.0.1:50051"; port 0
	// picks a free port (GRPCAddress reads it back).
	GRPCAddr string
	// AdminAddr is the admin HTTP listen address; empty turns it off.
	AdminAddr string
	Logger    *slog.Logger
	// ShutdownTimeout bounds the graceful stop; 10s when zero.
	ShutdownTimeout time.Duration
	// Credentials secure the gRPC listener (mtls.ServerCredentials); nil
	// serves plaintext. The admin listener is plaintext either way: it
	// serves only probes, metrics and pprof on request.
	Credentials credentials.TransportCredentials
	// ServerOptions are added after the interceptor chain (limits).
	ServerOptions []grpc.ServerOption
	// Authenticate is the authentication step of the interceptor chain;
	// nil lets every call through.
	Authenticate Authenticator
	// Pprof serves the Go runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin server. Profiles show code paths and
	// memory, never request contents, but they are for operators: keep
	// the admin address private when it is on.
	Pprof bool
	// Limits bound request size, streams, keepalive, idle time,
	// connections and each caller's rate; zero fields take their
	// defaults.
	Limits Limits
	// Clock is the time the per-caller rate limit runs on; time.Now when
	// nil.
	Clock func() time.Time
}

// Server is a gRPC server, its admin HTTP server and the service's further
// HTTP listeners.
type Server struct {
	opts      Options
	log       *slog.Logger
	grpc      *grpc.Server
	health    *health.Server
	ready     *Readiness
	registry  *prometheus.Registry
	metrics   *grpcprom.ServerMetrics
	mux       *http.ServeMux
	grpcLis   net.Listener
	adminLis  net.Listener
	listeners []*httpListener
}

// httpListener is a further HTTP listener of the service (the issuer's
// public discovery documents, policy's AuthZEN endpoint).
type httpListener struct {
	name    string
	addr    string
	handler http.Handler
	tls     *tls.Config // nil: plain HTTP
	lis     net.Listener
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
	log := opts.Logger.With("service", opts.Name)
	reg := prometheus.NewRegistry()
	metrics := newServerMetrics()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), metrics)
	opts.Limits = opts.Limits.withDefaults()
	var limiter *callerLimiter
	if !math.IsInf(opts.Limits.CallerRate, 1) {
		limiter = newCallerLimiter(opts.Limits.CallerRate, opts.Limits.CallerBurst, DefaultMaxTrackedCallers, opts.Clock)
		reg.MustRegister(limiter.counter)
	}
	sopts := append(chain(log, metrics, opts.Authenticate, limiter), opts.Limits.serverOptions()...)
	if opts.Credentials != nil {
		sopts = append(sopts, grpc.Creds(opts.Credentials))
	}
	gs := grpc.NewServer(append(sopts, opts.ServerOptions...)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s := &Server{opts: opts, log: log, grpc: gs, health: hs, registry: reg, metrics: metrics, mux: http.NewServeMux()}
	s.ready = newReadiness(s.setHealth)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.Handle("GET /readyz", s.ready)
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

// Health returns the health server, for statuses of names other than the
// server's and its services' (those follow Readiness).
func (s *Server) Health() *health.Server { return s.health }

// Readiness returns the registry of the server's dependencies.
func (s *Server) Readiness() *Readiness { return s.ready }

// Registry returns the Prometheus registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// HandleAdmin adds a handler to the admin HTTP server.
func (s *Server) HandleAdmin(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddHTTP adds a further HTTP listener named name (a log attribute, e.g.
// "public_http") serving h on addr. It is opened with the others by Listen,
// served by Run and logged like them. Call it before Listen.
func (s *Server) AddHTTP(name, addr string, h http.Handler) {
	s.listeners = append(s.listeners, &httpListener{name: name, addr: addr, handler: h})
}

// AddHTTPS is AddHTTP over TLS with cfg (e.g. mtls.ServerTLSConfig, so
// that h sees the client's verified certificate in r.TLS).
func (s *Server) AddHTTPS(name, addr string, h http.Handler, cfg *tls.Config) {
	s.listeners = append(s.listeners, &httpListener{name: name, addr: addr, handler: h, tls: cfg})
}

// setHealth sets the server's overall status ("") and each registered
// service's to follow readiness. After Run has begun the stop, the health
// server ignores it.
func (s *Server) setHealth(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	for name := range s.grpc.GetServiceInfo() {
		switch name {
		case healthpb.Health_ServiceDesc.ServiceName,
			reflectionpb.ServerReflection_ServiceDesc.ServiceName,
			reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName:
			continue
		}
		s.health.SetServingStatus(name, st)
	}
}

// Listen opens every listener, so that an address of port 0 is known
// (GRPCAddress, AdminAddress, HTTPAddress) before Run, and a port already
// taken fails here with the bind error. It opens none on error.
func (s *Server) Listen() (err error) {
	var opened []net.Listener
	defer func() {
		if err != nil {
			for _, l := range opened {
				_ = l.Close()
			}
			s.grpcLis, s.adminLis = nil, nil
			for _, h := range s.listeners {
				h.lis = nil
			}
		}
	}()
	open := func(name, addr string) (net.Listener, error) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listen %s: %w", name, addr, err)
		}
		opened = append(opened, lis)
		return lis, nil
	}
	if s.grpcLis == nil {
		if s.grpcLis, err = open("grpc", s.opts.GRPCAddr); err != nil {
			return err
		}
		s.grpcLis = s.opts.Limits.limitListener(s.grpcLis)
	}
	if s.adminLis == nil && s.opts.AdminAddr != "" {
		if s.adminLis, err = open("admin", s.opts.AdminAddr); err != nil {
			return err
		}
	}
	for _, h := range s.listeners {
		if h.lis == nil {
			if h.lis, err = open(h.name, h.addr); err != nil {
				return err
			}
			if h.tls != nil {
				h.lis = tls.NewListener(h.lis, h.tls)
			}
		}
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

// AdminAddress returns the bound admin address after Listen; empty when
// the admin server is off.
func (s *Server) AdminAddress() string {
	if s.adminLis == nil {
		return s.opts.AdminAddr
	}
	return s.adminLis.Addr().String()
}

// HTTPAddress returns the bound address of the listener added as name,
// after Listen; empty for an unknown name.
func (s *Server) HTTPAddress(name string) string {
	for _, h := range s.listeners {
		if h.name == name {
			if h.lis == nil {
				return h.addr
			}
			return h.lis.Addr().String()
		}
	}
	return ""
}

// Run serves until ctx ends, then stops gracefully: health turns NOT_SERVING,
// in-flight calls finish (bounded by ShutdownTimeout) and Run returns nil.
// A listener that fails ends Run with its error.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.metrics.InitializeMetrics(s.grpc)
	s.setHealth(s.ready.Ready())

	type httpServer struct {
		name string
		srv  *http.Server
		lis  net.Listener
	}
	var servers []httpServer
	if s.adminLis != nil {
		servers = append(servers, httpServer{"admin", &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}, s.adminLis})
	}
	for _, h := range s.listeners {
		servers = append(servers, httpServer{h.name, &http.Server{
			Handler: h.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		}, h.lis})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			return fmt.Errorf("grpc: %w", err)
		}
		return nil
	})
	for _, hs := range servers {
		g.Go(func() error {
			if err := hs.srv.Serve(hs.lis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s: %w", hs.name, err)
			}
			return nil
		})
	}
	s.log.Info("serving", "grpc", s.GRPCAddress(), "admin", s.AdminAddress())
	for _, h := range s.listeners {
		s.log.Info("serving", h.name, h.lis.Addr().String())
	}
	g.Go(func() error {
		<-gctx.Done()
		s.health.Shutdown()
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(s.opts.ShutdownTimeout):
			s.log.Warn("graceful stop timed out; closing connections")
			s.grpc.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		defer cancel()
		for _, hs := range servers {
			_ = hs.srv.Shutdown(sctx)
		}
		return nil
	})
	err := g.Wait()
	s.log.Info("stopped")
	return err
}
