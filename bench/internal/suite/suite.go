// Package suite starts jitid as production runs it, for the benchmarks:
// redis-server with AOF (appendfsync everysec), a NATS server with
// JetStream in its own process, and policy, audit and issuer as separate
// processes built from the repository, plus the bare gRPC echo server that
// is the ceiling the suite is compared with. Everything listens on
// 127.0.0.1.
package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/localinfra"
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
	// MTLS runs every link on mutual TLS with SVIDs from `jitid-dev pki`
	// (BinDir holds it), each service with its allow-list of callers, as
	// make run does; Creds gives the clients' credentials. Without it the
	// services speak plaintext on loopback.
	MTLS bool
	// RateLimit and RateBurst, when RateLimit is positive, are the
	// issuer's per-caller -rate-limit (calls per second) and -rate-burst.
	RateLimit, RateBurst int
}

// Suite is a running jitid deployment.
type Suite struct {
	opts   Options
	pkiDir string

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

// Start starts everything and waits until every service is SERVING. Every
// server binds a port the kernel chooses and reports it; Stop undoes
// Start, also after a failed one.
func Start(ctx context.Context, o Options) (*Suite, error) {
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil { //nolint:gosec // G301: logs and data for the operator to read
		return nil, err
	}
	s := &Suite{opts: o}
	var err error
	if o.MTLS {
		if err := s.writePKI(ctx); err != nil {
			return s, err
		}
	}
	s.Redis, err = localinfra.StartRedis(ctx, localinfra.RedisOptions{Dir: filepath.Join(o.WorkDir, "redis"), AppendOnly: true})
	if err != nil {
		return s, err
	}
	const anyPort = "127.0.0.1:0"
	s.NATS = s.proc(launch.Spec{Name: "jitid-nats", Args: []string{"-port", "-1", "-store-dir", filepath.Join(o.WorkDir, "nats")}})
	if err := s.NATS.Start(ctx); err != nil {
		return s, err
	}
	s.NATSURL = s.NATS.Addr("nats")
	s.Echo = s.proc(launch.Spec{Name: "jitid-echo", Args: []string{"-addr", anyPort}})
	if err := s.Echo.Start(ctx); err != nil {
		return s, err
	}
	s.EchoAddr = s.Echo.Addr("grpc")
	// The AuthZEN endpoint is off: its fixed default port may be taken, and
	// nothing here calls it.
	pprof := "-pprof=" + strconv.FormatBool(o.Pprof)
	policyDir, err := writePolicySet(o.WorkDir)
	if err != nil {
		return s, err
	}
	s.Policy = s.service("policy", append([]string{"-grpc-addr", anyPort, "-admin-addr", anyPort, pprof, "-authzen-addr", "", "-policy-file", policyDir},
		s.tlsArgs("policy", []string{"issuer"}, "-evaluators", ID("issuer"))...)...)
	if err := s.startService(ctx, s.Policy); err != nil {
		return s, err
	}
	s.PolicyAddr, s.PolicyAdmin = s.Policy.Addr("grpc"), s.Policy.Addr("admin")
	s.Audit = s.service("audit", append([]string{"-grpc-addr", anyPort, "-admin-addr", anyPort, pprof,
		"-nats-url", s.NATSURL, "-audit-dsn", "sqlite://" + filepath.Join(o.WorkDir, "audit.db")},
		s.tlsArgs("audit", []string{"auditor"}, "-auditors", ID("auditor"))...)...)
	if err := s.startService(ctx, s.Audit); err != nil {
		return s, err
	}
	s.AuditAddr, s.AuditAdmin = s.Audit.Addr("grpc"), s.Audit.Addr("admin")
	issuerArgs := []string{"-grpc-addr", anyPort, "-admin-addr", anyPort, pprof,
		"-nats-url", s.NATSURL, "-redis-addr", s.Redis.Addr(), "-policy-addr", s.PolicyAddr,
		// Revoking a delegator's credentials issues tens of thousands for
		// one delegator: a quota that high keeps its cost (one round
		// trip per issuance) in the figures without refusing them.
		"-delegator-quota", "100000000"}
	if o.SweepInterval > 0 {
		issuerArgs = append(issuerArgs, "-sweep-interval", o.SweepInterval.String())
	}
	issuerArgs = append(issuerArgs, s.tlsArgs("issuer", []string{"platform", "platform-b"}, "-policy-id", ID("policy"))...)
	if o.RateLimit > 0 {
		issuerArgs = append(issuerArgs, "-rate-limit", strconv.Itoa(o.RateLimit), "-rate-burst", strconv.Itoa(max(o.RateBurst, 1)))
	}
	s.Issuer = s.service("issuer", issuerArgs...)
	if err := s.startService(ctx, s.Issuer); err != nil {
		return s, err
	}
	s.IssuerAddr, s.IssuerAdmin = s.Issuer.Addr("grpc"), s.Issuer.Addr("admin")
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

// proc returns a Proc of a binary in BinDir that logs to WorkDir.
func (s *Suite) proc(spec launch.Spec) *Proc {
	spec.Path = filepath.Join(s.opts.BinDir, spec.Name)
	spec.LogPath = filepath.Join(s.opts.WorkDir, spec.Name+".log")
	spec.StopTimeout = 15 * time.Second
	return &Proc{Name: spec.Name, LogPath: spec.LogPath, Process: launch.New(spec)}
}

func (s *Suite) service(name string, args ...string) *Proc {
	spec := launch.Service(name, "", "", args...)
	// On mTLS the launcher's plaintext health probe is refused;
	// startService waits for /readyz instead.
	spec.Health = !s.opts.MTLS
	return s.proc(spec)
}

// startService starts a service and, on mTLS, waits until it is ready.
func (s *Suite) startService(ctx context.Context, p *Proc) error {
	if err := p.Start(ctx); err != nil {
		return err
	}
	if s.opts.MTLS {
		return waitReady(ctx, p)
	}
	return nil
}

// Proc is one child process; its output goes to LogPath.
type Proc struct {
	Name    string
	LogPath string
	*launch.Process
}

// Stop sends SIGTERM and waits, killing after 15s. A benchmark reports
// figures, not shutdown defects, so the outcome is only in the log.
func (p *Proc) Stop() { _ = p.Process.Stop() }

// RSS returns the resident set size (VmRSS of /proc/<pid>/status), in bytes.
func (p *Proc) RSS() (int64, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s not running", p.Name)
	}
	return RSSOf(pid)
}
