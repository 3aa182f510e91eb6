// Command jitid-echo serves a bare gRPC unary echo on 127.0.0.1: no
// interceptors, no logging, no work, the ceiling of any gRPC service on
// the machine it runs on.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/jitid/jitid/bench/internal/echo"
)

func main() {
	fs := flag.NewFlagSet("jitid-echo", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50060", "listen address")
	_ = fs.Parse(os.Args[1:])
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jitid-echo:", err)
		os.Exit(1)
	}
	// The launcher reads the bound address from this line, as from a
	// jitid service's.
	fmt.Printf("{\"msg\":\"serving\",\"grpc\":%q}\n", lis.Addr().String())
	s := grpc.NewServer()
	s.RegisterService(&echo.ServiceDesc, nil)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		fmt.Fprintln(os.Stderr, "jitid-echo:", err)
		os.Exit(1)
	}
}
