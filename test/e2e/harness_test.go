package e2e_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/embeddednats"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"

	"github.com/jitid/jitid/pkg/mtls"
)

// The identities of a stack: every service and client holds an X.509 SVID
// of the stack's own test CA, in the trust domain e2eTrustDomain.
const (
	e2eTrustDomain = "jitid.test"
	issuerID       = "spiffe://jitid.test/issuer"
	policyID       = "spiffe://jitid.test/policy"
	auditID        = "spiffe://jitid.test/audit"
	// platformID is the agent platform the stack's default clients call as.
	platformID = "spiffe://jitid.test/platform/e2e"
	adminID    = "spiffe://jitid.test/admin"
	auditorID  = "spiffe://jitid.test/auditor"
	// ticketAPIID is the example resource server (examples/ticketapi).
	ticketAPIID = "spiffe://jitid.test/rs/tickets"
	// probeID is the identity of the test's health checks.
	probeID = "spiffe://jitid.test/probe"
)

// The services under test, each built once per test binary run.
const (
	svcIssuer = "issuer"
	svcPolicy = "policy"
	svcAudit  = "audit"
)

var (
	raceBinaries = flag.Bool("e2e.race", os.Getenv("JITID_E2E_RACE") == "1",
		"build the service binaries with -race (slower; finds data races in the services)")
	keepLogs = flag.Bool("e2e.logs", false, "print the services' log tails even when a test passes")
	binDir   = flag.String("e2e.bindir", os.Getenv("JITID_E2E_BIN_DIR"),
		"use the issuer, policy and audit binaries found in this directory instead of building them (a missing one is built)")
)

// binary returns the path of a service's binary: prebuilt in -e2e.bindir,
// or built once per test binary run.
func binary(t testing.TB, name string) string {
	t.Helper()
	if *binDir != "" {
		if p, err := filepath.Abs(filepath.Join(*binDir, name)); err == nil {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/" + name, Package: "./cmd/" + name, Race: *raceBinaries})
}

// proc is one service process: it binds ports the kernel chooses, reports
// them, and keeps them across restarts; its output goes to one log file
// that survives restarts. A stop that is not graceful, a data race or a
// panic fails the test.
type proc struct {
	t    testing.TB
	name string
	*launch.Process
	grpc string // the bound gRPC address, once started
}

// newProc returns a service process; its health is checked over creds.
func newProc(t testing.TB, name, svc string, creds credentials.TransportCredentials, args []string) *proc {
	t.Helper()
	args = append([]string{"-grpc-addr", "127.0.0.1:0"}, args...)
	logPath := filepath.Join(t.TempDir(), name+".log")
	if *keepLogs {
		// Registered before ForTest's cleanup, so it runs once the process
		// has stopped; ForTest prints the tail itself when the test failed.
		t.Cleanup(func() {
			if !t.Failed() {
				t.Logf("--- %s log (tail) %s ---\n%s", name, logPath, launch.Tail(logPath, 60))
			}
		})
	}
	spec := launch.Service(name, binary(t, svc), logPath, args...)
	spec.HealthCredentials = creds
	return &proc{t: t, name: name, Process: launch.ForTest(t, spec)}
}

// Start runs the process and waits until its gRPC health check says SERVING.
func (p *proc) Start() {
	p.t.Helper()
	if err := p.Process.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	p.grpc = p.Addr("grpc")
}

// Stop sends SIGTERM and waits for a graceful exit.
func (p *proc) Stop() {
	p.t.Helper()
	if err := p.Process.Stop(); err != nil {
		p.t.Error(err)
	}
}

// Restart stops the process and starts it again on the same ports.
func (p *proc) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Pause freezes the process (SIGSTOP) until every thread is stopped.
func (p *proc) Pause() {
	p.t.Helper()
	if err := p.Process.Pause(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

// dial opens a client over a real socket with creds (s.creds).
// Reconnection backoff is short because the tests restart servers on the
// same port and expect clients to come back quickly.
func dial(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
}

// stackOptions shape one test's deployment.
type stackOptions struct {
	// issuers is how many issuer replicas share Redis and NATS (1 when zero).
	issuers int
	// policyTimeout is the issuer's -policy-timeout (500ms when zero).
	policyTimeout time.Duration
	// sweepInterval is the issuer's -sweep-interval (the default when zero).
	sweepInterval time.Duration
	// logLevel of every service (info when empty).
	logLevel string
	// issuerArgs, policyArgs and auditArgs are added to each service's
	// flags.
	issuerArgs, policyArgs, auditArgs []string
	// asserting are the platforms policy permits to assert a delegator
	// without a subject token (assertionPolicyArgs): platformID and
	// platformB (the second platform of the authorization tests) when nil,
	// so that tests issuing without a token keep working; an empty,
	// non-nil list permits none. Ignored when policyArgs names a
	// -policy-file.
	asserting []string
}

// stack is one test's own deployment of jitid: a Redis, an embedded NATS on
// a fixed port (so it can be restarted), and the three services as
// processes, all with names no other test uses.
type stack struct {
	t  testing.TB
	ns string // key prefix, and the root of stream and subject names

	redisAddr string
	rdb       *redis.Client

	natsPort int
	natsDir  string
	nats     *natsserver.Server
	natsURL  string

	stream        string
	subjectPrefix string
	auditDB       string // path of the audit SQLite file

	ca *testca.CA // issues every SVID of the stack

	policy  *proc
	audit   *proc
	issuers []*proc

	issuer    issuerv1.IssuerServiceClient   // client of issuers[0], as platformID
	issuerAll []issuerv1.IssuerServiceClient // one per replica, as platformID
	auditor   auditv1.AuditServiceClient     // as auditorID
}

func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	if o.issuers == 0 {
		o.issuers = 1
	}
	if o.policyTimeout == 0 {
		o.policyTimeout = 500 * time.Millisecond
	}
	if o.logLevel == "" {
		o.logLevel = "info"
	}
	// Fail fast, before starting anything, when a service did not build.
	for _, name := range []string{svcPolicy, svcAudit, svcIssuer} {
		binary(t, name)
	}
	ns := testserver.Namespace(t)
	s := &stack{
		t:             t,
		ns:            ns,
		natsPort:      -1,
		natsDir:       t.TempDir(),
		stream:        "E2E_" + strings.ToUpper(ns),
		subjectPrefix: "e2e." + ns,
		auditDB:       filepath.Join(t.TempDir(), "audit.db"),
		ca:            testca.New(t, "e2e"),
	}
	s.redisAddr = testserver.RedisAddr(t)
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr})
	t.Cleanup(func() { s.rdb.Close() })
	s.StartNATS()
	// Registered before the processes, so it runs after they have stopped,
	// whichever server instance is current by then.
	t.Cleanup(func() {
		if s.nats != nil {
			s.nats.Shutdown()
		}
	})

	common := []string{"-log-format", "text", "-log-level", o.logLevel, "-admin-addr", "",
		"-allowed-clients", "spiffe://" + e2eTrustDomain, "-admins", adminID}
	// The AuthZEN endpoint (docs/configuration.md) defaults to a fixed
	// port; off, so that parallel tests do not fight over it.
	if o.asserting == nil {
		o.asserting = []string{platformID, platformB}
	}
	if !slices.Contains(o.policyArgs, "-policy-file") {
		o.policyArgs = append(assertionPolicyArgs(t, o.asserting), o.policyArgs...)
	}
	s.policy = newProc(t, svcPolicy, svcPolicy, s.creds(probeID), slices.Concat(common, s.tlsArgs(policyID), o.policyArgs, []string{"-authzen-addr", "", "-evaluators", issuerID}))
	s.audit = newProc(t, svcAudit, svcAudit, s.creds(probeID), slices.Concat(common, s.tlsArgs(auditID), o.auditArgs, []string{
		"-auditors", auditorID,
		"-audit-dsn", "sqlite://" + s.auditDB,
		"-nats-url", s.natsURL,
		"-stream", s.stream,
		"-subject-prefix", s.subjectPrefix,
	}))
	s.policy.Start()
	s.audit.Start()
	policyAddr := s.policy.grpc
	for i := 0; i < o.issuers; i++ {
		args := slices.Concat(common, s.tlsArgs(issuerID), o.issuerArgs, []string{
			"-policy-id", policyID,
			"-redis-addr", s.redisAddr,
			"-key-prefix", ns,
			"-nats-url", s.natsURL,
			"-stream", s.stream,
			"-subject-prefix", s.subjectPrefix,
			"-policy-addr", policyAddr,
			"-policy-timeout", o.policyTimeout.String(),
		})
		if o.sweepInterval > 0 {
			args = append(args, "-sweep-interval", o.sweepInterval.String())
		}
		p := newProc(t, fmt.Sprintf("issuer-%d", i), svcIssuer, s.creds(probeID), args)
		p.Start()
		s.issuers = append(s.issuers, p)
		s.issuerAll = append(s.issuerAll, issuerv1.NewIssuerServiceClient(s.conn(p.grpc, platformID)))
	}
	s.issuer = s.issuerAll[0]
	s.auditor = auditv1.NewAuditServiceClient(s.conn(s.audit.grpc, auditorID))
	return s
}

// svid writes an X.509 SVID of the stack's CA for the SPIFFE ID id into a
// directory of its own.
func (s *stack) svid(id string) testca.Files {
	s.t.Helper()
	return s.ca.WriteSVID(s.t, s.t.TempDir(), id)
}

// creds are the mTLS credentials of a client calling as the SPIFFE ID id,
// talking to any server of the stack's trust domain.
func (s *stack) creds(id string) credentials.TransportCredentials {
	s.t.Helper()
	f := s.svid(id)
	src, err := mtls.NewFileSource(mtls.FileConfig{CertFile: f.Cert, KeyFile: f.Key, BundleFile: f.Bundle})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = src.Close() })
	return mtls.ClientCredentials(src, mtls.AllowTrustDomain(spiffeid.RequireTrustDomainFromString(e2eTrustDomain)))
}

// tlsArgs are the flags that serve mTLS with an SVID for id.
func (s *stack) tlsArgs(id string) []string {
	f := s.svid(id)
	return []string{"-tls-cert", f.Cert, "-tls-key", f.Key, "-tls-bundle", f.Bundle}
}

// issuerAs returns a client of the first issuer calling as the SPIFFE ID
// id (a platform, an admin, a resource server).
func (s *stack) issuerAs(id string) issuerv1.IssuerServiceClient {
	s.t.Helper()
	return issuerv1.NewIssuerServiceClient(s.conn(s.issuers[0].grpc, id))
}

// conn opens a client of addr calling as the SPIFFE ID id.
func (s *stack) conn(addr, id string) *grpc.ClientConn {
	s.t.Helper()
	c, err := dial(addr, s.creds(id))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// StartNATS starts the embedded NATS server on a port it chooses, or
// starts it again on that port, with the stack's JetStream directory.
func (s *stack) StartNATS() {
	s.t.Helper()
	ns, err := embeddednats.Start(embeddednats.Options{Port: s.natsPort, StoreDir: s.natsDir})
	if err != nil {
		s.t.Fatalf("start NATS on port %d: %v", s.natsPort, err)
	}
	s.nats = ns
	s.natsPort = embeddednats.Port(ns)
	s.natsURL = ns.ClientURL()
}

// StopNATS shuts the embedded NATS server down.
func (s *stack) StopNATS() {
	s.nats.Shutdown()
	s.nats.WaitForShutdown()
}

// processLogs returns every service's log, for secret scanning.
func (s *stack) processLogs() map[string]string {
	logs := map[string]string{s.policy.name: s.policy.Log(), s.audit.name: s.audit.Log()}
	for _, p := range s.issuers {
		logs[p.name] = p.Log()
	}
	return logs
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, what, timeout, 100*time.Millisecond, func() (bool, bool) {
		ok := cond()
		return ok, ok
	})
}

// holdsFor polls cond for d and reports whether it held every time. It
// catches late duplicates after a count was first reached.
func holdsFor(d time.Duration, cond func() bool) bool {
	// What is awaited is cond breaking: a timeout means it held throughout.
	_, err := testkit.Poll("the condition to stop holding", d, 100*time.Millisecond, func() (bool, bool) {
		ok := cond()
		return ok, !ok
	})
	return err != nil
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// containsAny reports whether haystack contains one of the needles.
func containsAny(haystack []byte, needles ...string) bool {
	for _, n := range needles {
		if n != "" && bytes.Contains(haystack, []byte(n)) {
			return true
		}
	}
	return false
}
