package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/grpcserver"
)

type panicky struct {
	healthpb.UnimplementedHealthServer
}

func (panicky) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	panic("boom")
}

func start(t *testing.T) (*grpcserver.Server, *grpc.ClientConn, context.CancelFunc, <-chan error) {
	t.Helper()
	return startWith(t, grpcserver.Options{})
}

func startWith(t *testing.T, opts grpcserver.Options) (*grpcserver.Server, *grpc.ClientConn, context.CancelFunc, <-chan error) {
	t.Helper()
	opts.Name, opts.GRPCAddr, opts.AdminAddr = "test", "127.0.0.1:0", "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := grpcserver.New(opts)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	conn, err := grpc.NewClient(s.GRPCAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); conn.Close() })
	return s, conn, cancel, done
}

func TestHealthReflectionAdmin(t *testing.T) {
	t.Parallel()
	s, conn, cancel, done := start(t)
	ctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, svc := range r.GetListServicesResponse().GetService() {
		found = found || svc.GetName() == "grpc.health.v1.Health"
	}
	if !found {
		t.Errorf("reflection does not list grpc.health.v1.Health: %v", r)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := http.Get("http://" + s.AdminAddress() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, res.StatusCode)
		}
	}
	ccancel() // ends the reflection stream, so the graceful stop has nothing to wait for
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v after graceful stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	get := func(s *grpcserver.Server, path string) int {
		res, err := http.Get("http://" + s.AdminAddress() + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	off, _, _, _ := start(t)
	if code := get(off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof off: GET /debug/pprof/ = %d, want 404", code)
	}
	on, _, _, _ := startWith(t, grpcserver.Options{Pprof: true})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/profile?seconds=1"} {
		if code := get(on, path); code != http.StatusOK {
			t.Errorf("pprof on: GET %s = %d, want 200", path, code)
		}
	}
}

func TestRecoveryTurnsPanicIntoInternal(t *testing.T) {
	t.Parallel()
	s := grpcserver.New(grpcserver.Options{
		Name: "test", GRPCAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	// A second service name avoids the registered health server.
	desc := healthpb.Health_ServiceDesc
	desc.ServiceName = "test.Panicky"
	s.GRPC().RegisterService(&desc, panicky{})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	conn, err := grpc.NewClient(s.GRPCAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(ctx, "/test.Panicky/Check", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Internal {
		t.Errorf("panicking handler: code %v, want Internal", status.Code(err))
	}
}
