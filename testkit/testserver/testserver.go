// Package testserver gives tests real servers: a redis-server process and an
// embedded NATS server with JetStream, or the servers named by
// JITID_TEST_REDIS_ADDR and JITID_TEST_NATS_URL when set. Under CI=true a
// server that cannot be had fails the test; elsewhere it skips with a line
// saying what to install.
package testserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/jitid/jitid/testkit/localinfra"
)

// Environment variables that point tests at running servers.
const (
	EnvRedisAddr = "JITID_TEST_REDIS_ADDR"
	EnvNATSURL   = "JITID_TEST_NATS_URL"
)

// InCI reports whether the tests run under CI (CI=true), where a missing
// server is a failure rather than a skip.
func InCI() bool { return strings.EqualFold(os.Getenv("CI"), "true") || os.Getenv("CI") == "1" }

// Namespace returns a name unique to this test run, for key prefixes,
// stream names and subject prefixes, so that tests sharing a server never
// see each other's data.
func Namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// RedisAddr returns the address of a Redis for this test: JITID_TEST_REDIS_ADDR
// when set, otherwise a redis-server started for the test and stopped after.
func RedisAddr(t testing.TB) string {
	t.Helper()
	if addr := os.Getenv(EnvRedisAddr); addr != "" {
		return addr
	}
	return StartRedis(t).Addr()
}

// StartRedis starts a redis-server process owned by the test, which may stop
// and restart it.
func StartRedis(t testing.TB) *localinfra.Redis {
	t.Helper()
	r, err := localinfra.StartRedis(context.Background(), localinfra.RedisOptions{Dir: t.TempDir()})
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(r.Stop)
	return r
}

// NATSURL returns the URL of a NATS server with JetStream for this test:
// JITID_TEST_NATS_URL when set, otherwise an embedded server.
func NATSURL(t testing.TB) string {
	t.Helper()
	if url := os.Getenv(EnvNATSURL); url != "" {
		return url
	}
	return StartNATS(t, -1, t.TempDir()).ClientURL()
}

// StartNATS starts an embedded NATS server with JetStream owned by the test.
// Start it again with the same port and dir to model a restart.
func StartNATS(t testing.TB, port int, dir string) *natsserver.Server {
	t.Helper()
	s, err := localinfra.StartNATS(localinfra.NATSOptions{Port: port, StoreDir: dir})
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, localinfra.ErrRedisNotInstalled) && !InCI() {
		t.Skipf("skipping: %v", err)
	}
	t.Fatalf("test server: %v", err)
}

// ClosedAddr returns a loopback address nothing listens on, for tests of a
// dependency that is down: the kernel handed the port out and it was
// closed at once.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// NATSPortForLater returns a port that an embedded NATS server bound and
// released, for a test of a client that starts before its server:
// StartNATS on this port later starts the server where the client already
// points, as a restart would.
func NATSPortForLater(t testing.TB) int {
	t.Helper()
	s := StartNATS(t, -1, t.TempDir())
	port := localinfra.NATSPort(s)
	s.Shutdown()
	s.WaitForShutdown()
	return port
}
