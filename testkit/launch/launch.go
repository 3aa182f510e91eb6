// Package launch runs a server binary as a child process for the e2e
// tests, the benchmark suite and the dev stack: it captures the output to
// a log file, reads back the addresses the server bound from its own
// output (no free-port-then-bind), waits for gRPC health SERVING, and
// stops, kills, pauses and restarts it.
package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Spec describes a process to run.
type Spec struct {
	// Name names the process in errors and in its log.
	Name string
	// Path is the binary.
	Path string
	// Args are the arguments; a jitid service gets -grpc-addr 127.0.0.1:0
	// and -admin-addr 127.0.0.1:0 and reports what it bound.
	Args []string
	// Env is the environment; nil means this process's, without JITID_
	// variables, so that the arguments alone configure the child.
	Env []string
	// LogPath receives everything the process writes, across restarts.
	LogPath string
	// Output, when set, also receives every line the process writes.
	Output io.Writer
	// Ready recognises the line of output that says the process is ready
	// and returns what it reports (addresses by name). Nil means
	// ServingLine.
	Ready func(line []byte) (map[string]string, bool)
	// Health waits, after Ready, until the gRPC health service at the
	// reported "grpc" address answers SERVING.
	Health bool
	// HealthCredentials secure the health check's connection (a service
	// serving mTLS); nil dials in plaintext.
	HealthCredentials credentials.TransportCredentials
	// Rebind maps a flag to the reported address that replaces its value
	// on Restart, so that a restarted server listens where its clients
	// already point (its port was chosen by the kernel at the first start).
	Rebind map[string]string
	// StartTimeout bounds Start (30s when zero).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (10s
	// when zero).
	StopTimeout time.Duration
}

// Service returns the Spec of a jitid service: it is ready when it logs
// "serving" and answers health SERVING, and keeps its ports on Restart.
func Service(name, path, logPath string, args ...string) Spec {
	return Spec{
		Name: name, Path: path, Args: args, LogPath: logPath, Health: true,
		Rebind: map[string]string{"-grpc-addr": "grpc", "-admin-addr": "admin"},
	}
}

// ServingLine recognises the line a jitid service logs once its listeners
// are bound: msg "serving", with the bound addresses as the attributes
// "grpc" and "admin".
func ServingLine(line []byte) (map[string]string, bool) { return LogLine("serving")(line) }

// LogLine returns a Ready func that recognises the slog line with message
// msg, in either slog format (JSON, or text key=value), and returns its
// string attributes.
func LogLine(msg string) func([]byte) (map[string]string, bool) {
	return func(line []byte) (map[string]string, bool) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] == '{' {
			var m map[string]any
			if json.Unmarshal(line, &m) != nil || m["msg"] != msg {
				return nil, false
			}
			attrs := map[string]string{}
			for k, v := range m {
				if s, ok := v.(string); ok {
					attrs[k] = s
				}
			}
			return attrs, true
		}
		attrs := parseText(string(line))
		if attrs["msg"] != msg {
			return nil, false
		}
		return attrs, true
	}
}

// parseText splits a slog text line into its key=value pairs; a value may
// be quoted.
func parseText(s string) map[string]string {
	attrs := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ")
		k, rest, ok := strings.Cut(s, "=")
		if !ok || strings.Contains(k, " ") {
			return attrs
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return attrs
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		attrs[k] = v
		s = rest
	}
	return attrs
}

// LineContains returns a Ready func for a server that reports readiness
// with a fixed text and nothing else (redis-server).
func LineContains(text string) func([]byte) (map[string]string, bool) {
	return func(line []byte) (map[string]string, bool) {
		return map[string]string{}, bytes.Contains(line, []byte(text))
	}
}

// ExitError means the process exited before it was ready, or while it was
// expected to run.
type ExitError struct {
	Name string
	// Err is what Wait returned (nil for status 0).
	Err error
	// Tail is the end of the process's log, from this run only.
	Tail string
}

// Error says which process exited, how, and what it wrote last.
func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited (%s); log tail:\n%s", e.Name, describe(e.Err), e.Tail)
}

func describe(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Process is a child process run from a Spec. Its methods are safe for
// concurrent use.
type Process struct {
	spec Spec

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error // of the last run; read after done is closed
	paused  bool
	addrs   map[string]string
	starts  int
}

// New returns a Process for s, not started.
func New(s Spec) *Process {
	if s.Ready == nil {
		s.Ready = ServingLine
	}
	if s.StartTimeout == 0 {
		s.StartTimeout = 30 * time.Second
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = 10 * time.Second
	}
	if s.Env == nil {
		s.Env = ChildEnv()
	}
	s.Args = append([]string(nil), s.Args...)
	return &Process{spec: s}
}

// Start runs the process and waits until it is ready (Spec.Ready, then
// Spec.Health). Started again, it gets the flags named in Spec.Rebind set
// to the addresses its earlier run reported. A process that exits first
// returns an *ExitError; one that is not ready within Spec.StartTimeout is
// killed.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: already running", p.spec.Name)
	}
	if err := os.MkdirAll(filepath.Dir(p.spec.LogPath), 0o750); err != nil {
		p.mu.Unlock()
		return err
	}
	f, err := os.OpenFile(p.spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	// A second start listens where the first one's clients point.
	for i := 0; i+1 < len(p.spec.Args); i++ {
		if attr, ok := p.spec.Rebind[p.spec.Args[i]]; ok && p.addrs[attr] != "" {
			p.spec.Args[i+1] = p.addrs[attr]
		}
	}
	p.starts++
	fmt.Fprintf(f, "=== launch: start #%d: %s %s\n", p.starts, p.spec.Name, strings.Join(p.spec.Args, " "))
	ready := make(chan map[string]string, 1)
	out := &lineWriter{file: f, extra: p.spec.Output, ready: p.spec.Ready, readyc: ready}
	cmd := exec.Command(p.spec.Path, p.spec.Args...) //nolint:gosec // G204: the binary and arguments the caller's Spec configures
	cmd.Env = p.spec.Env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = f.Close() // the failed start is the error to report
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		out.flush()
		fmt.Fprintf(f, "=== launch: %s exited: %s\n", p.spec.Name, describe(err))
		_ = f.Close()   // a log: a failed write has nowhere better to be reported
		p.exitErr = err // ordered before every read by close(done)
		close(done)
	}()
	p.cmd, p.done, p.paused = cmd, done, false
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.spec.StartTimeout)
	defer cancel()
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case <-done:
		p.forget(done)
		return &ExitError{Name: p.spec.Name, Err: p.exitErr, Tail: runTail(p.spec.LogPath, 40)}
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("%s not ready: %w; log tail:\n%s", p.spec.Name, ctx.Err(), Tail(p.spec.LogPath, 40))
	}
	p.mu.Lock()
	p.addrs = addrs
	p.mu.Unlock()
	if p.spec.Health {
		if err := waitHealth(ctx, addrs["grpc"], p.spec.HealthCredentials, done); err != nil {
			p.Kill()
			return fmt.Errorf("%s not SERVING on %s: %w; log tail:\n%s", p.spec.Name, addrs["grpc"], err, Tail(p.spec.LogPath, 40))
		}
	}
	return nil
}

// forget clears a run that has ended on its own.
func (p *Process) forget(done chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == done {
		p.cmd = nil
	}
}

// Addr returns the address the process reported under name ("grpc",
// "admin"), from its last start.
func (p *Process) Addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[name]
}

// Name returns Spec.Name.
func (p *Process) Name() string { return p.spec.Name }

// LogPath returns Spec.LogPath.
func (p *Process) LogPath() string { return p.spec.LogPath }

// Log returns everything the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.spec.LogPath)
	return string(b)
}

// Exited returns a channel closed when the current run ends; nil when the
// process is not running.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	return p.done
}

// PID returns the process id, 0 when it is not running.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop sends SIGTERM and waits for the process to exit, killing it after
// Spec.StopTimeout. It returns an error when the process had already
// exited, exited with a non-zero status, or had to be killed: a server
// that does not shut down gracefully is a defect.
func (p *Process) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil }()
	select {
	case <-p.done:
		return fmt.Errorf("%s had exited before it was stopped: %s", p.spec.Name, describe(p.exitErr))
	default:
	}
	if p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.exitErr != nil {
			return fmt.Errorf("%s exited with %s after SIGTERM; want status 0", p.spec.Name, describe(p.exitErr))
		}
		return nil
	case <-time.After(p.spec.StopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.spec.Name, p.spec.StopTimeout)
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd, p.paused = nil, false
}

// Restart stops the process and starts it again (see Start).
func (p *Process) Restart(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start(ctx)
}

// Pause freezes the process (SIGSTOP) and returns once every thread is
// stopped: its sockets stay open and nothing sent from then on gets an
// answer. Resume or Stop thaws it.
func (p *Process) Pause(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd == nil {
		p.mu.Unlock()
		return fmt.Errorf("%s: not running", p.spec.Name)
	}
	pid := p.cmd.Process.Pid
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("SIGSTOP %s: %w", p.spec.Name, err)
	}
	p.paused = true
	p.mu.Unlock()
	// A group stop completes asynchronously.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for !allThreadsStopped(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) not stopped after SIGSTOP: %w", p.spec.Name, pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Resume thaws a paused process (SIGCONT).
func (p *Process) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
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
		// pid (comm) state ...; comm may hold spaces, so look after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// ChildEnv returns this process's environment without JITID_ variables.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JITID_") {
			env = append(env, kv)
		}
	}
	return env
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

// runTail is Tail of the last run only: what follows the last start
// marker, so that an earlier run's errors are not taken for this one's.
func runTail(path string, n int) string {
	t := Tail(path, n)
	if i := strings.LastIndex(t, "=== launch: start #"); i >= 0 {
		return t[i:]
	}
	return t
}

// WatchLog returns a writer for the log of a server run in this process
// (a test of a main's run function) and a channel that receives what the
// first ready line reports (ready nil: ServingLine).
func WatchLog(ready func([]byte) (map[string]string, bool)) (io.Writer, <-chan map[string]string) {
	if ready == nil {
		ready = ServingLine
	}
	c := make(chan map[string]string, 1)
	return &lineWriter{ready: ready, readyc: c}, c
}

// lineWriter receives the process's output: every byte goes to the log
// file (when there is one), every complete line to extra and, until one is
// ready, to ready.
type lineWriter struct {
	mu     sync.Mutex
	file   *os.File
	extra  io.Writer
	ready  func([]byte) (map[string]string, bool)
	readyc chan<- map[string]string
	seen   bool
	buf    []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.file != nil {
		if _, err := w.file.Write(b); err != nil {
			return 0, err
		}
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = nil
	}
}

func (w *lineWriter) line(l []byte) {
	if w.extra != nil {
		_, _ = w.extra.Write(append(append([]byte(nil), l...), '\n'))
	}
	if !w.seen {
		if attrs, ok := w.ready(l); ok {
			w.seen = true
			w.readyc <- attrs
		}
	}
}

// waitHealth waits until the gRPC health service at addr answers SERVING,
// or the process exits.
func waitHealth(ctx context.Context, addr string, creds credentials.TransportCredentials, exited <-chan struct{}) error {
	if addr == "" {
		return errors.New(`no "grpc" address reported`)
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		switch {
		case err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			return nil
		case err == nil:
			last = fmt.Errorf("health %s", resp.GetStatus())
		default:
			last = err
		}
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last) //nolint:errorlint // ctx's error is what callers match; the last health answer is detail
		case <-time.After(20 * time.Millisecond):
		}
	}
}
