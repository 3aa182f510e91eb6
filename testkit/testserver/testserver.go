// Package testserver gives tests real servers: a redis-server process and
// a NATS server with JetStream in a process of its own, or the servers
// named by JITID_TEST_REDIS_ADDR and JITID_TEST_NATS_URL when set. Under
// CI=true a server that cannot be had fails the test; elsewhere a missing
// redis-server skips it with a line saying what to install.
//
// It does not import nats-server, so that a module whose tests use it (pkg)
// does not require it; tests that stop and restart NATS use embeddednats.
package testserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
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
		if errors.Is(err, localinfra.ErrRedisNotInstalled) && !InCI() {
			t.Skipf("skipping: %v", err)
		}
		t.Fatalf("test server: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// NATSURL returns the URL of a NATS server with JetStream for this test:
// JITID_TEST_NATS_URL when set, otherwise testkit's jitid-nats, built once
// per test binary, run for the test on a port it chooses and reports.
func NATSURL(t testing.TB) string {
	t.Helper()
	if url := os.Getenv(EnvNATSURL); url != "" {
		return url
	}
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/testkit", Package: "./cmd/jitid-nats"})
	dir := t.TempDir()
	p := launch.ForTest(t, launch.Spec{
		Name: "jitid-nats", Path: bin, LogPath: filepath.Join(dir, "nats.log"),
		Args: []string{"-port", "-1", "-store-dir", filepath.Join(dir, "jetstream")},
	})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p.Addr("nats")
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
