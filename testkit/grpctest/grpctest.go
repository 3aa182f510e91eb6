// Package grpctest runs a gRPC server for a test on a real loopback socket
// and gives the test a client connection to it: the start-up that every
// gRPC API test otherwise copies.
package grpctest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Serve starts a grpc.Server with opts on 127.0.0.1:0, lets register add
// its services, serves until the test ends and returns a client
// connection to it, closed when the test ends.
func Serve(t testing.TB, register func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return Dial(t, lis.Addr().String())
}

// Runner is a server that binds its listeners in Listen, reports the bound
// gRPC address, and serves until its context ends (pkg/grpcserver's
// Server), so that a test exercises the interceptors production runs.
type Runner interface {
	Listen() error
	GRPCAddress() string
	Run(ctx context.Context) error
}

// Run binds srv (its gRPC address should be 127.0.0.1:0), runs it until
// the test ends and returns a client connection to it. A Run that then
// returns an error fails the test: the server did not stop cleanly.
func Run(t testing.TB, srv Runner) *grpc.ClientConn {
	t.Helper()
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// Registered before Dial's cleanup, so it runs after the connection
	// has closed.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	})
	return Dial(t, srv.GRPCAddress())
}

// Dial returns a plaintext client connection to addr, closed when the test
// ends.
func Dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
