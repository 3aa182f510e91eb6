// Package localinfra starts a redis-server process for the tests, the
// benchmark suite and `make run`; production runs its own Redis. NATS is in
// embeddednats, so that what imports this does not import nats-server.
package localinfra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jitid/jitid/testkit/launch"
)

// ErrRedisNotInstalled means no redis-server binary is on PATH. Its text is
// the one line `make run` prints when it refuses to start.
var ErrRedisNotInstalled = errors.New("redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or set JITID_REDIS_ADDR to a running Redis")

// Redis is a redis-server process on a loopback port.
type Redis struct {
	proc *launch.Process
	port int
}

// RedisOptions configure StartRedis.
type RedisOptions struct {
	// Dir is the working directory (log, and AOF when AppendOnly).
	Dir string
	// Port is the port to try first; when it is taken (or zero), ports the
	// kernel hands out are tried.
	Port int
	// AppendOnly turns on AOF with appendfsync everysec, as production runs.
	AppendOnly bool
	// Args are more redis-server arguments (--cluster-enabled yes, ...).
	Args []string
}

// bindAttempts bounds the retries when another process takes the port
// between the kernel handing it out and redis-server binding it.
const bindAttempts = 10

// StartRedis starts redis-server and waits until it says it accepts
// connections. redis-server cannot report a port the kernel chose, so it
// is started on a candidate port and started again on another when its
// own log says the address is in use: readiness and bind errors are read
// from this process, never guessed by dialling a port another server may
// hold.
func StartRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrRedisNotInstalled
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "jitid-redis-*"); err != nil {
			return nil, err
		}
	}
	// redis-server does not create its --dir.
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	port := o.Port
	for attempt := 1; ; attempt++ {
		if port == 0 {
			if port, err = candidatePort(); err != nil {
				return nil, err
			}
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--dir", o.Dir, "--logfile", "", "--daemonize", "no"}
		if o.AppendOnly {
			args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
		} else {
			args = append(args, "--appendonly", "no")
		}
		args = append(args, o.Args...)
		p := launch.New(launch.Spec{
			Name: "redis-server", Path: bin, Args: args, Env: os.Environ(),
			LogPath: filepath.Join(o.Dir, "redis.log"),
			Ready:   launch.LineContains("Ready to accept connections"),
		})
		err := p.Start(ctx)
		if err == nil {
			return &Redis{proc: p, port: port}, nil
		}
		var exit *launch.ExitError
		if !errors.As(err, &exit) || !strings.Contains(exit.Tail, "Address already in use") || attempt == bindAttempts {
			return nil, fmt.Errorf("start redis-server on port %d: %w", port, err)
		}
		port = 0
	}
}

// candidatePort returns a port the kernel handed out a moment ago; the
// caller retries when it has been taken since.
func candidatePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// PID returns the process id, 0 when it is not running.
func (r *Redis) PID() int { return r.proc.PID() }

// Stop kills the process and waits for it to exit: Redis keeps no state
// worth a graceful shutdown here, and AOF survives a kill.
func (r *Redis) Stop() { r.proc.Kill() }

// Restart kills the process and starts it again on the same port and
// directory.
func (r *Redis) Restart(ctx context.Context) error {
	r.proc.Kill()
	return r.proc.Start(ctx)
}
