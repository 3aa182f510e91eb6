// Command server is a gRPC server with a health service for launch's
// tests: it binds -grpc-addr, logs the "serving" line a jitid service
// logs, and exits with status 0 on SIGTERM; -fail makes it exit at once.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("grpc-addr", "127.0.0.1:0", "gRPC listen address")
	fail := flag.Bool("fail", false, "exit with status 3 before serving")
	flag.Parse()
	if *fail {
		fmt.Fprintln(os.Stderr, "server: told to fail")
		os.Exit(3)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		gs.GracefulStop()
	}()
	slog.New(slog.NewJSONHandler(os.Stdout, nil)).Info("serving", "grpc", lis.Addr().String(), "admin", "")
	if err := gs.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}
