// Package localinfra starts the real servers jitid needs on one machine: a
// redis-server process and an embedded NATS server with JetStream. The test
// harness and `make run` use it; production runs its own Redis and NATS.
package localinfra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// ErrRedisNotInstalled means no redis-server binary is on PATH.
var ErrRedisNotInstalled = errors.New("redis-server not found on PATH (install it: apt-get install redis-server, or brew install redis)")

// Redis is a redis-server process on a loopback port.
type Redis struct {
	mu   sync.Mutex
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// Dir is the working directory (logs, and AOF when AppendOnly).
	Dir string
	// Port is the port to listen on; a free one when zero.
	Port int
	// AppendOnly turns on AOF with appendfsync everysec, as production runs.
	AppendOnly bool
}

// StartRedis starts redis-server and waits until it answers PING.
func StartRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrRedisNotInstalled
	}
	if o.Port == 0 {
		if o.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "jitid-redis-*"); err != nil {
			return nil, err
		}
	}
	// redis-server neither creates its --dir nor says why it stopped when
	// the log file cannot be opened.
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	r := &Redis{bin: bin, dir: o.Dir, port: o.Port}
	args := []string{"--port", strconv.Itoa(o.Port), "--bind", "127.0.0.1", "--save", "",
		"--dir", o.Dir, "--logfile", filepath.Join(o.Dir, "redis.log"), "--daemonize", "no"}
	if o.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	r.cmd = exec.Command(bin, args...) //nolint:gosec // G204: running the redis-server the operator named is the point
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Redis) start(ctx context.Context) error {
	cmd := exec.Command(r.cmd.Path, r.cmd.Args[1:]...) //nolint:gosec // G204: the command built above, started again
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(r.Addr()) {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start: %s", strings.TrimSpace(string(log)))
		case <-ctx.Done():
			r.Stop()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return errors.New("redis-server did not answer PING within 10s")
		}
	}
}

// ping sends one inline PING, without a client library whose connection
// pool would log every refused dial while the server starts.
func ping(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := io.ReadFull(conn, buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// Addr returns host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Stop kills the process and waits for it to exit.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd.Process = nil
}

// Restart starts the process again on the same port and directory.
func (r *Redis) Restart(ctx context.Context) error {
	r.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.start(ctx)
}

// MemoryRedis is an in-process Redis-protocol server (miniredis) for
// machines without redis-server. State lives in memory only.
type MemoryRedis struct{ m *miniredis.Miniredis }

// StartMemoryRedis starts a MemoryRedis on addr ("127.0.0.1:0" for any port).
func StartMemoryRedis(addr string) (*MemoryRedis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("start in-memory redis: %w", err)
	}
	return &MemoryRedis{m: m}, nil
}

// Addr returns host:port.
func (m *MemoryRedis) Addr() string { return m.m.Addr() }

// Stop closes the server.
func (m *MemoryRedis) Stop() { m.m.Close() }

// NATSOptions configure StartNATS.
type NATSOptions struct {
	Host string
	// Port to listen on; -1 for a random one.
	Port int
	// StoreDir holds JetStream data; start again with the same dir to keep it.
	StoreDir string
}

// StartNATS starts an embedded NATS server with JetStream and waits until it
// accepts connections.
func StartNATS(o NATSOptions) (*natsserver.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = -1
	}
	opts := &natsserver.Options{
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		ServerName: "jitid-local",
	}
	s, err := natsserver.NewServer(opts)
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitServing waits until the gRPC server at addr answers its health check
// SERVING, polling until timeout. A server without a health service (it
// answers Unimplemented) counts as up: it answered.
func WaitServing(ctx context.Context, addr string, timeout time.Duration) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		switch {
		case err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			return nil
		case status.Code(err) == codes.Unimplemented:
			return nil
		case err == nil:
			last = fmt.Errorf("health %s", resp.GetStatus())
		default:
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return last
}
