package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jitid/jitid/pkg/localinfra"
	"github.com/jitid/jitid/pkg/testserver"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
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

// binaries holds the path of each built service, or why it did not build.
var binaries struct {
	dir  string
	path map[string]string
	err  map[string]error
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jitid-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binaries.dir = dir
	binaries.path = map[string]string{}
	binaries.err = map[string]error{}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// Built one after another: the machine is small, and parallel builds of
	// three modules sharing most dependencies gain little.
	for _, name := range []string{svcPolicy, svcAudit, svcIssuer} {
		if *binDir != "" {
			if p, err := filepath.Abs(filepath.Join(*binDir, name)); err == nil {
				if _, err := os.Stat(p); err == nil {
					fmt.Fprintf(os.Stderr, "e2e: using prebuilt %s\n", p)
					binaries.path[name] = p
					continue
				}
			}
		}
		out := filepath.Join(dir, name)
		args := []string{"build", "-o", out}
		if *raceBinaries {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/"+name)
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(root, "services", name)
		if b, err := cmd.CombinedOutput(); err != nil {
			binaries.err[name] = fmt.Errorf("go build ./cmd/%s in services/%s: %w\n%s", name, name, err, b)
			continue
		}
		binaries.path[name] = out
	}
	return m.Run()
}

// binary returns the path of a built service, failing the test when it did
// not build.
func binary(t testing.TB, name string) string {
	t.Helper()
	if err := binaries.err[name]; err != nil {
		t.Fatalf("service binary unavailable: %v", err)
	}
	return binaries.path[name]
}

// childEnv is the environment of the services: JITID_ variables of the
// caller's environment are dropped so that the flags alone configure them.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JITID_") {
			env = append(env, kv)
		}
	}
	return env
}

// proc is one service process. It can be stopped, paused and restarted with
// the same flags; its stdout and stderr go to one log file that survives
// restarts.
type proc struct {
	t       testing.TB
	name    string
	bin     string
	args    []string
	grpc    string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool  // SIGSTOPped
	exitErr error // of the last run, once it has exited
	starts  int
}

func newProc(t testing.TB, name string, grpcAddr string, args []string) *proc {
	t.Helper()
	p := &proc{
		t:       t,
		name:    name,
		bin:     binary(t, name),
		args:    append([]string{"-grpc-addr", grpcAddr}, args...),
		grpc:    grpcAddr,
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() || *keepLogs {
			t.Logf("--- %s log (tail) %s ---\n%s", p.name, p.logPath, tail(p.logPath, 60))
		}
	})
	return p
}

// Start runs the process and waits until its gRPC health check says SERVING.
func (p *proc) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s: already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		p.t.Fatal(err)
	}
	p.starts++
	fmt.Fprintf(f, "=== e2e: start #%d: %s %s\n", p.starts, p.name, strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		p.mu.Unlock()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== e2e: %s exited: %v\n", p.name, exitDescription(err))
		_ = f.Close()
		// Read only after <-done, which orders this write before the read.
		p.exitErr = err
		close(done)
	}()
	p.cmd, p.done, p.stopped = cmd, done, false
	p.mu.Unlock()

	if err := waitServing(p.grpc, done, 30*time.Second); err != nil {
		p.t.Fatalf("%s did not become healthy on %s: %v\n--- %s log ---\n%s", p.name, p.grpc, err, p.name, tail(p.logPath, 40))
	}
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// 10s; a service that ignores SIGTERM is a defect (graceful shutdown).
func (p *proc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
		p.t.Errorf("%s had exited before it was stopped: %v", p.name, exitDescription(p.exitErrLocked()))
		p.cmd = nil
		return
	default:
	}
	if p.stopped {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.stopped = false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if err := p.exitErrLocked(); err != nil {
			p.t.Errorf("%s exited with %v after SIGTERM; want a graceful exit (status 0)", p.name, exitDescription(err))
		}
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s did not exit within 10s of SIGTERM (graceful shutdown); killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
	// A race detector report (binaries built with -e2e.race) or a panic
	// is a defect whatever the test checked.
	if log := p.Log(); strings.Contains(log, "WARNING: DATA RACE") {
		p.t.Errorf("%s: the race detector reported a data race; see %s", p.name, p.logPath)
	} else if strings.Contains(log, "\npanic: ") || strings.HasPrefix(log, "panic: ") {
		p.t.Errorf("%s panicked; see %s", p.name, p.logPath)
	}
}

// exitErrLocked reads the exit error of the last run; call it only after
// p.done is closed.
func (p *proc) exitErrLocked() error { return p.exitErr }

func exitDescription(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Kill ends the process with SIGKILL: no graceful shutdown, as in a crash.
func (p *proc) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd, p.stopped = nil, false
}

// Restart stops the process and starts it again with the same flags.
func (p *proc) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Pause freezes the process (SIGSTOP): its sockets stay open, it answers
// nothing. Resume or Stop thaws it.
func (p *proc) Pause() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatalf("%s: not running", p.name)
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatalf("SIGSTOP %s: %v", p.name, err)
	}
	p.stopped = true
	// A group stop completes asynchronously: wait until every thread is
	// in state T, so that nothing sent from now on gets an answer.
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for !allThreadsStopped(pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s (pid %d) not stopped 5s after SIGSTOP", p.name, pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of pid is stopped (state
// T in /proc/<pid>/task/<tid>/stat).
func allThreadsStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...; comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume thaws a paused process (SIGCONT).
func (p *proc) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.stopped {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.stopped = false
	}
}

// Log returns everything the process wrote so far.
func (p *proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func waitServing(addr string, exited <-chan struct{}, timeout time.Duration) error {
	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		switch {
		case err != nil:
			last = err
		case resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			return nil
		default:
			last = fmt.Errorf("health status %v", resp.GetStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not SERVING within %v: %v", timeout, last) //nolint:errorlint // last may be nil: reported as text
}

// dial opens a client over a real socket. Reconnection backoff is short
// because the tests restart servers on the same port and expect clients to
// come back quickly.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: 2 * time.Second,
		}))
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := localinfra.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func freeAddr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
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

	policy  *proc
	audit   *proc
	issuers []*proc

	issuer    issuerv1.IssuerServiceClient   // client of issuers[0]
	issuerAll []issuerv1.IssuerServiceClient // one per replica
	auditor   auditv1.AuditServiceClient
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
		natsPort:      freePort(t),
		natsDir:       t.TempDir(),
		stream:        "E2E_" + strings.ToUpper(ns),
		subjectPrefix: "e2e." + ns,
		auditDB:       filepath.Join(t.TempDir(), "audit.db"),
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

	common := []string{"-log-format", "text", "-log-level", o.logLevel, "-admin-addr", ""}
	policyAddr := freeAddr(t)
	// The AuthZEN endpoint (docs/configuration.md) defaults to a fixed
	// port; off, so that parallel tests do not fight over it.
	s.policy = newProc(t, svcPolicy, policyAddr, append(append([]string{}, common...), "-authzen-addr", ""))
	s.audit = newProc(t, svcAudit, freeAddr(t), append(append([]string{}, common...),
		"-audit-dsn", "sqlite://"+s.auditDB,
		"-nats-url", s.natsURL,
		"-stream", s.stream,
		"-subject-prefix", s.subjectPrefix,
	))
	s.policy.Start()
	s.audit.Start()
	for i := 0; i < o.issuers; i++ {
		args := append(append([]string{}, common...),
			"-redis-addr", s.redisAddr,
			"-key-prefix", ns,
			"-nats-url", s.natsURL,
			"-stream", s.stream,
			"-subject-prefix", s.subjectPrefix,
			"-policy-addr", policyAddr,
			"-policy-timeout", o.policyTimeout.String(),
		)
		if o.sweepInterval > 0 {
			args = append(args, "-sweep-interval", o.sweepInterval.String())
		}
		p := newProc(t, svcIssuer, freeAddr(t), args)
		p.name = fmt.Sprintf("issuer-%d", i)
		p.logPath = filepath.Join(filepath.Dir(p.logPath), p.name+".log")
		p.Start()
		s.issuers = append(s.issuers, p)
		s.issuerAll = append(s.issuerAll, issuerv1.NewIssuerServiceClient(s.conn(p.grpc)))
	}
	s.issuer = s.issuerAll[0]
	s.auditor = auditv1.NewAuditServiceClient(s.conn(s.audit.grpc))
	return s
}

func (s *stack) conn(addr string) *grpc.ClientConn {
	s.t.Helper()
	c, err := dial(addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// StartNATS starts (or starts again) the embedded NATS server on the
// stack's port with the stack's JetStream directory.
func (s *stack) StartNATS() {
	s.t.Helper()
	ns, err := localinfra.StartNATS(localinfra.NATSOptions{Port: s.natsPort, StoreDir: s.natsDir})
	if err != nil {
		s.t.Fatalf("start NATS on port %d: %v", s.natsPort, err)
	}
	s.nats = ns
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
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holdsFor polls cond for d and reports whether it held every time. It
// catches late duplicates after a count was first reached.
func holdsFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
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
