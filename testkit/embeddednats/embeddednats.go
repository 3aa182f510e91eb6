// Package embeddednats runs a NATS server with JetStream inside the
// process, for the tests that stop and restart it and for `make run`.
package embeddednats

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Options configure Start.
type Options struct {
	Host string
	// Port to listen on; -1 (or zero) for one the kernel chooses, read
	// back with Port. Start again on the port of a first start to model a
	// restart.
	Port int
	// StoreDir holds JetStream data; start again with the same dir to keep it.
	StoreDir string
}

// Start starts an embedded NATS server with JetStream and waits until it
// accepts connections.
func Start(o Options) (*natsserver.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = -1
	}
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		ServerName: "jitid-local",
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready within 10s")
	}
	return s, nil
}

// Port returns the port a started server listens on.
func Port(s *natsserver.Server) int {
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// ForTest starts a server owned by the test, shut down when it ends.
// Start it again with the same port and dir to model a restart.
func ForTest(t testing.TB, port int, dir string) *natsserver.Server {
	t.Helper()
	s, err := Start(Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// PortForLater returns a port that an embedded server bound and released,
// for a test of a client that starts before its server: ForTest on this
// port later starts the server where the client already points, as a
// restart would.
func PortForLater(t testing.TB) int {
	t.Helper()
	s := ForTest(t, -1, t.TempDir())
	port := Port(s)
	s.Shutdown()
	s.WaitForShutdown()
	return port
}
