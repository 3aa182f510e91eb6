// Command jitid-nats runs a NATS server with JetStream in its own process:
// for the benchmarks, as production runs NATS, and for the tests of modules
// that must not import the server (pkg, which resource servers import).
// The Debian nats-server on these machines is 2.9, and the suite is tested
// against github.com/nats-io/nats-server/v2 v2.15.2, so this runs that same
// server.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

func main() {
	fs := flag.NewFlagSet("jitid-nats", flag.ExitOnError)
	port := fs.Int("port", 4222, "client port on 127.0.0.1; -1 for one the kernel chooses")
	dir := fs.String("store-dir", "", "JetStream directory (required)")
	_ = fs.Parse(os.Args[1:])
	if err := run(*port, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "jitid-nats:", err)
		os.Exit(1)
	}
}

func run(port int, dir string) error {
	if dir == "" {
		return fmt.Errorf("-store-dir is required")
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoSigs: true, ServerName: "jitid-nats", MaxPayload: 8 << 20,
	})
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("not ready within 10s")
	}
	fmt.Fprintf(os.Stderr, "jitid-nats: nats-server %s listening on %s\n", natsserver.VERSION, s.ClientURL())
	// The launcher reads the bound address from this line, as from a jitid
	// service's.
	fmt.Printf("{\"msg\":\"serving\",\"nats\":%q}\n", s.ClientURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
