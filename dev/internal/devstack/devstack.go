// Package devstack starts the jitid suite for a developer or an operator
// trying it out: infrastructure first (reusing what the environment names),
// then the three services as child processes, then a summary of where each
// part listens and what to try.
package devstack

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jitid/jitid/pkg/localinfra"
)

// Default addresses of the services (DESIGN.md).
const (
	IssuerAddr = "127.0.0.1:50051"
	PolicyAddr = "127.0.0.1:50052"
	AuditAddr  = "127.0.0.1:50053"
)

type options struct {
	binDir  string
	dataDir string
	redis   string
	nats    string
}

// Main parses args, starts everything and blocks until ctx ends.
func Main(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("jitid-dev", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.binDir, "bin-dir", "bin", "directory holding the issuer, policy and audit binaries")
	fs.StringVar(&o.dataDir, "data-dir", ".jitid", "directory for NATS, Redis and audit data")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.redis, o.nats = getenv("JITID_REDIS_ADDR"), getenv("JITID_NATS_URL")
	if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
		return err
	}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	say := func(format string, a ...any) { fmt.Fprintf(out, "jitid-dev: "+format+"\n", a...) }

	natsNote := "from JITID_NATS_URL"
	if o.nats == "" {
		port := preferredPort(4222)
		ns, err := localinfra.StartNATS(localinfra.NATSOptions{Port: port, StoreDir: filepath.Join(o.dataDir, "nats")})
		if err != nil {
			return fmt.Errorf("start embedded NATS: %w", err)
		}
		cleanups = append(cleanups, ns.Shutdown)
		o.nats = ns.ClientURL()
		natsNote = "embedded, JetStream data in " + filepath.Join(o.dataDir, "nats")
	}
	redisNote := "from JITID_REDIS_ADDR"
	if o.redis == "" {
		port := preferredPort(6379)
		r, err := localinfra.StartRedis(ctx, localinfra.RedisOptions{
			Dir: absPath(filepath.Join(o.dataDir, "redis")), Port: port, AppendOnly: true,
		})
		switch {
		case err == nil:
			cleanups = append(cleanups, r.Stop)
			o.redis = r.Addr()
			redisNote = "redis-server, AOF in " + filepath.Join(o.dataDir, "redis")
		case errors.Is(err, localinfra.ErrRedisNotInstalled):
			m, merr := localinfra.StartMemoryRedis(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if merr != nil {
				return merr
			}
			cleanups = append(cleanups, m.Stop)
			o.redis = m.Addr()
			redisNote = "EMBEDDED IN-MEMORY Redis-protocol server: credentials and undelivered events are lost when jitid-dev stops"
			say("WARNING: redis-server is not installed; using an in-memory Redis-protocol server. State is in memory only. Install redis-server for the real thing.")
		default:
			return fmt.Errorf("start redis-server: %w", err)
		}
	}

	procs := []*child{
		{name: "policy", args: []string{"-grpc-addr", PolicyAddr, "-admin-addr", "127.0.0.1:9092", "-log-format", "text"}, addr: PolicyAddr},
		{name: "audit", args: []string{"-grpc-addr", AuditAddr, "-admin-addr", "127.0.0.1:9093", "-log-format", "text",
			"-nats-url", o.nats, "-audit-dsn", "sqlite://" + absPath(filepath.Join(o.dataDir, "audit.db"))}, addr: AuditAddr},
		{name: "issuer", args: []string{"-grpc-addr", IssuerAddr, "-admin-addr", "127.0.0.1:9091", "-log-format", "text",
			"-nats-url", o.nats, "-redis-addr", o.redis, "-policy-addr", PolicyAddr}, addr: IssuerAddr},
	}
	// The children take their settings from flags; JITID_ variables of the
	// environment that would fight them are removed.
	env := childEnv()
	exited := make(chan string, len(procs))
	for _, p := range procs {
		if err := p.start(filepath.Join(o.binDir, p.name), env, out, exited); err != nil {
			return err
		}
		cleanups = append(cleanups, p.stop)
		if err := localinfra.WaitServing(ctx, p.addr, 20*time.Second); err != nil {
			return fmt.Errorf("%s did not become healthy on %s: %w", p.name, p.addr, err)
		}
	}

	fmt.Fprintf(out, `
jitid is running. Ctrl-C stops everything.

  issuer  grpc %s   admin http://127.0.0.1:9091/metrics
  policy  grpc %s   admin http://127.0.0.1:9092/metrics
  audit   grpc %s   admin http://127.0.0.1:9093/metrics
  NATS    %s (%s)
  Redis   %s (%s)

Try (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3):

  grpcurl -plaintext -d '{"agent":{"id":"agent:research-1","class":"AGENT_CLASS_EPHEMERAL","platform":"demo"},"delegator":{"id":"user:alice"},"task":{"id":"task-42","purpose":"summarise Q3 tickets","sensitivity":"SENSITIVITY_MEDIUM"},"scopes":["tickets:read"],"ttl":"600s"}' %s jitid.issuer.v1.IssuerService/IssueCredential

  grpcurl -plaintext -d '{"task_id":"task-42","reason":"done"}' %s jitid.issuer.v1.IssuerService/CompleteTask

  grpcurl -plaintext -d '{"filter":{"task_id":"task-42"}}' %s jitid.audit.v1.AuditService/QueryEvents

Watch events: nats --server %s sub 'jitid.events.>'

`, IssuerAddr, PolicyAddr, AuditAddr, o.nats, natsNote, o.redis, redisNote, IssuerAddr, IssuerAddr, AuditAddr, o.nats)

	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited; stopping the suite", name)
	}
}

// preferredPort returns port when it is free, else any free port, so that a
// second stack (or a system service) on the default port does not stop it.
func preferredPort(port int) int {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil {
		_ = l.Close()
		return port
	}
	if p, err := localinfra.FreePort(); err == nil {
		return p
	}
	return -1
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "JITID_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

type child struct {
	name    string
	args    []string
	addr    string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool
}

func (c *child) start(bin string, env []string, out io.Writer, exited chan<- string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s binary not found at %s (run make build): %w", c.name, bin, err)
	}
	cmd := exec.Command(bin, c.args...) //nolint:gosec // G204: starting the suite's own binaries is the point
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(out, "%-6s | %s\n", c.name, sc.Text())
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(c.done)
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		if !stopped {
			exited <- c.name
		}
	}()
	return nil
}

func (c *child) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
