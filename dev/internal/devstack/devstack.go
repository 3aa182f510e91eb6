// Package devstack starts the jitid suite for a developer or an operator
// trying it out: infrastructure first (reusing what the environment names),
// then the three services as child processes, then a summary of where each
// part listens and what to try.
package devstack

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/jitid/jitid/testkit/embeddednats"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/localinfra"
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

	// Checked before anything starts: an in-memory stand-in would lack the
	// Lua the sweep needs, and expiry events would silently never happen.
	if o.redis == "" {
		if _, err := exec.LookPath("redis-server"); err != nil {
			return localinfra.ErrRedisNotInstalled
		}
	}
	natsNote := "from JITID_NATS_URL"
	if o.nats == "" {
		// NATS's default port when it is free, so that the nats CLI finds
		// the suite without flags; any other port otherwise (the summary
		// and .jitid/addrs.env say which).
		// An embedded server whose port is taken only says so after its
		// ready timeout, so the port is tried first; should another
		// process take it in between, the start fails and says so.
		port := -1
		if l, err := net.Listen("tcp", "127.0.0.1:4222"); err == nil {
			_ = l.Close()
			port = 4222
		}
		ns, err := embeddednats.Start(embeddednats.Options{Port: port, StoreDir: filepath.Join(o.dataDir, "nats")})
		if err != nil {
			return fmt.Errorf("start embedded NATS: %w", err)
		}
		cleanups = append(cleanups, ns.Shutdown)
		o.nats = ns.ClientURL()
		natsNote = "embedded, JetStream data in " + filepath.Join(o.dataDir, "nats")
	}
	redisNote := "from JITID_REDIS_ADDR"
	if o.redis == "" {
		r, err := localinfra.StartRedis(ctx, localinfra.RedisOptions{
			Dir: absPath(filepath.Join(o.dataDir, "redis")), Port: 6379, AppendOnly: true,
		})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, r.Stop)
		o.redis = r.Addr()
		redisNote = "redis-server, AOF in " + filepath.Join(o.dataDir, "redis")
	}

	common := []string{"-log-format", "text"}
	specs := []launch.Spec{
		launch.Service("policy", filepath.Join(o.binDir, "policy"), filepath.Join(o.dataDir, "policy.log"),
			append([]string{"-grpc-addr", PolicyAddr, "-admin-addr", "127.0.0.1:9092"}, common...)...),
		launch.Service("audit", filepath.Join(o.binDir, "audit"), filepath.Join(o.dataDir, "audit.log"),
			append([]string{"-grpc-addr", AuditAddr, "-admin-addr", "127.0.0.1:9093",
				"-nats-url", o.nats, "-audit-dsn", "sqlite://" + absPath(filepath.Join(o.dataDir, "audit.db"))}, common...)...),
		launch.Service("issuer", filepath.Join(o.binDir, "issuer"), filepath.Join(o.dataDir, "issuer.log"),
			append([]string{"-grpc-addr", IssuerAddr, "-admin-addr", "127.0.0.1:9091",
				"-nats-url", o.nats, "-redis-addr", o.redis, "-policy-addr", PolicyAddr}, common...)...),
	}
	procs := map[string]*launch.Process{}
	exited := make(chan string, len(specs))
	for _, s := range specs {
		if _, err := os.Stat(s.Path); err != nil {
			return fmt.Errorf("%s binary not found at %s (run make build): %w", s.Name, s.Path, err)
		}
		s.Output = &prefixWriter{w: out, prefix: fmt.Sprintf("%-6s | ", s.Name)}
		p := launch.New(s)
		if err := p.Start(ctx); err != nil {
			return err
		}
		procs[s.Name] = p
		cleanups = append(cleanups, func() {
			if err := p.Stop(); err != nil {
				say("%v", err)
			}
		})
		go func() {
			if done := p.Exited(); done != nil {
				<-done
				exited <- p.Name()
			}
		}()
	}
	admin := func(name string) string { return "http://" + procs[name].Addr("admin") + "/metrics" }

	fmt.Fprintf(out, `
jitid is running. Ctrl-C stops everything.

  issuer  grpc %s   admin %s
  policy  grpc %s   admin %s
  audit   grpc %s   admin %s
  NATS    %s (%s)
  Redis   %s (%s)

Try (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3):

  grpcurl -plaintext -d '{"agent":{"id":"agent:research-1","class":"AGENT_CLASS_EPHEMERAL","platform":"demo"},"delegator":{"id":"user:alice"},"task":{"id":"task-42","purpose":"summarise Q3 tickets","sensitivity":"SENSITIVITY_MEDIUM"},"scopes":["tickets:read"],"ttl":"600s"}' %s jitid.issuer.v1.IssuerService/IssueCredential

  grpcurl -plaintext -d '{"task_id":"task-42","reason":"done"}' %s jitid.issuer.v1.IssuerService/CompleteTask

  grpcurl -plaintext -d '{"filter":{"task_id":"task-42"}}' %s jitid.audit.v1.AuditService/QueryEvents

Watch events: nats --server %s sub 'jitid.events.>'

`, procs["issuer"].Addr("grpc"), admin("issuer"), procs["policy"].Addr("grpc"), admin("policy"),
		procs["audit"].Addr("grpc"), admin("audit"), o.nats, natsNote, o.redis, redisNote, IssuerAddr, IssuerAddr, AuditAddr, o.nats)

	if err := writeAddrs(filepath.Join(o.dataDir, "addrs.env"), map[string]string{
		"JITID_ISSUER_ADDR": procs["issuer"].Addr("grpc"),
		"JITID_POLICY_ADDR": procs["policy"].Addr("grpc"),
		"JITID_AUDIT_ADDR":  procs["audit"].Addr("grpc"),
		"JITID_NATS_URL":    o.nats,
		"JITID_REDIS_ADDR":  o.redis,
	}); err != nil {
		return err
	}
	say("addresses written to %s (. %s)", filepath.Join(o.dataDir, "addrs.env"), filepath.Join(o.dataDir, "addrs.env"))

	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited (log %s); stopping the suite", name, procs[name].LogPath())
	}
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// prefixWriter writes each line it is given (the launcher writes whole
// lines) after a prefix naming the process.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, p.prefix); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}

// writeAddrs writes the suite's addresses as a shell file of KEY=value
// lines, sorted, so that the README's commands and the examples use what
// this run bound rather than assume the defaults.
func writeAddrs(path string, addrs map[string]string) error {
	keys := make([]string, 0, len(addrs))
	for k := range addrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, addrs[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
