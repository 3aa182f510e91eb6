// Package suite starts jitid as production runs it, for the benchmarks:
// redis-server with AOF (appendfsync everysec), a NATS server with
// JetStream in its own process, and policy, audit and issuer as separate
// processes built from the repository, plus the bare gRPC echo server that
// is the ceiling the suite is compared with. Everything listens on
// 127.0.0.1.
package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jitid/jitid/pkg/localinfra"
)

// Options configure Start.
type Options struct {
	// BinDir holds issuer, policy, audit, jitid-nats and jitid-echo.
	BinDir string
	// WorkDir holds Redis, NATS and audit data and every process's log.
	WorkDir string
	// SweepInterval is the issuer's -sweep-interval (its default when zero).
	SweepInterval time.Duration
	// Pprof starts policy, audit and issuer with -pprof, so that Profile
	// can read their runtime profiles.
	Pprof bool
}

// Suite is a running jitid deployment.
type Suite struct {
	opts Options

	Redis   *localinfra.Redis
	NATSURL string

	NATS, Policy, Audit, Issuer, Echo *Proc

	IssuerAddr, PolicyAddr, AuditAddr, EchoAddr string
	// AuditAdmin is the audit admin HTTP address (/metrics).
	AuditAdmin string
	// IssuerAdmin is the issuer admin HTTP address (/metrics).
	IssuerAdmin string
	// PolicyAdmin is the policy admin HTTP address (/metrics).
	PolicyAdmin string
}

// Start starts everything and waits until every service is SERVING. Stop
// undoes it, also after a failed Start.
func Start(ctx context.Context, o Options) (*Suite, error) {
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil { //nolint:gosec // G301: logs and data for the operator to read
		return nil, err
	}
	s := &Suite{opts: o}
	var err error
	s.Redis, err = localinfra.StartRedis(ctx, localinfra.RedisOptions{Dir: filepath.Join(o.WorkDir, "redis"), AppendOnly: true})
	if err != nil {
		return s, err
	}
	addrs := make([]string, 9)
	for i := range addrs {
		p, err := localinfra.FreePort()
		if err != nil {
			return s, err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	natsAddr := addrs[0]
	s.NATSURL = "nats://" + natsAddr
	s.IssuerAddr, s.PolicyAddr, s.AuditAddr, s.EchoAddr = addrs[1], addrs[2], addrs[3], addrs[4]
	s.IssuerAdmin, s.AuditAdmin, s.PolicyAdmin = addrs[5], addrs[6], addrs[7]

	_, natsPort, _ := splitPort(natsAddr)
	s.NATS = s.proc("jitid-nats", "-port", natsPort, "-store-dir", filepath.Join(o.WorkDir, "nats"))
	if err := s.NATS.Start(); err != nil {
		return s, err
	}
	if err := waitTCP(ctx, natsAddr, 10*time.Second); err != nil {
		return s, fmt.Errorf("nats: %w", err)
	}
	s.Echo = s.proc("jitid-echo", "-addr", s.EchoAddr)
	// The AuthZEN endpoint is off: its fixed default port may be taken, and
	// nothing here calls it.
	pprof := "-pprof=" + strconv.FormatBool(o.Pprof)
	s.Policy = s.proc("policy", "-grpc-addr", s.PolicyAddr, "-admin-addr", s.PolicyAdmin, pprof, "-authzen-addr", "")
	s.Audit = s.proc("audit", "-grpc-addr", s.AuditAddr, "-admin-addr", s.AuditAdmin, pprof,
		"-nats-url", s.NATSURL, "-audit-dsn", "sqlite://"+filepath.Join(o.WorkDir, "audit.db"))
	issuerArgs := []string{"-grpc-addr", s.IssuerAddr, "-admin-addr", s.IssuerAdmin, pprof,
		"-nats-url", s.NATSURL, "-redis-addr", s.Redis.Addr(), "-policy-addr", s.PolicyAddr}
	if o.SweepInterval > 0 {
		issuerArgs = append(issuerArgs, "-sweep-interval", o.SweepInterval.String())
	}
	s.Issuer = s.proc("issuer", issuerArgs...)
	for _, p := range []*Proc{s.Echo, s.Policy, s.Audit, s.Issuer} {
		if err := p.Start(); err != nil {
			return s, err
		}
	}
	for _, p := range []*Proc{s.Echo, s.Policy, s.Audit, s.Issuer} {
		if err := localinfra.WaitServing(ctx, p.grpcAddr(), 30*time.Second); err != nil {
			return s, fmt.Errorf("%s not serving: %w (log %s)", p.Name, err, p.LogPath)
		}
	}
	return s, nil
}

// Stop stops every process, issuer first.
func (s *Suite) Stop() {
	for _, p := range []*Proc{s.Issuer, s.Audit, s.Policy, s.Echo, s.NATS} {
		if p != nil {
			p.Stop()
		}
	}
	if s.Redis != nil {
		s.Redis.Stop()
	}
}

// Services returns the jitid service processes, in report order.
func (s *Suite) Services() []*Proc { return []*Proc{s.Issuer, s.Policy, s.Audit} }

func (s *Suite) proc(name string, args ...string) *Proc {
	return &Proc{
		Name:    name,
		bin:     filepath.Join(s.opts.BinDir, name),
		args:    args,
		LogPath: filepath.Join(s.opts.WorkDir, name+".log"),
	}
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", errors.New("no port")
}

// Proc is one child process; its output goes to LogPath.
type Proc struct {
	Name    string
	LogPath string
	bin     string
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *Proc) grpcAddr() string {
	for i, a := range p.args {
		if (a == "-grpc-addr" || a == "-addr") && i+1 < len(p.args) {
			return p.args[i+1]
		}
	}
	return ""
}

// Start runs the process.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) //nolint:gosec // G302: a process log for the operator to read
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...) //nolint:gosec // G204: starting the suite's own binaries is the point
	cmd.Stdout, cmd.Stderr = f, f
	// Flags alone configure the children.
	for _, kv := range os.Environ() {
		if len(kv) < 6 || kv[:6] != "JITID_" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Restart starts the process again and waits until it serves gRPC.
func (p *Proc) Restart(ctx context.Context) error {
	p.Stop()
	if err := p.Start(); err != nil {
		return err
	}
	return localinfra.WaitServing(ctx, p.grpcAddr(), 30*time.Second)
}

// Stop sends SIGTERM and waits, killing after 15s.
func (p *Proc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// PID returns the process id, 0 when it is not running.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// RSS returns the resident set size (VmRSS of /proc/<pid>/status), in bytes.
func (p *Proc) RSS() (int64, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s not running", p.Name)
	}
	return RSSOf(pid)
}
