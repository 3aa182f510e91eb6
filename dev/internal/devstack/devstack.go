// Package devstack starts the jitid suite for a developer or an operator
// trying it out, set up as production runs it: infrastructure first
// (reusing what the environment names), the local CA's SVIDs (devpki) and
// the demo OpenID Provider, then the three services as child processes on
// mutual TLS with their allow-lists, then a summary of where each part
// listens and the exact client flags.
package devstack

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jitid/jitid/dev/internal/devpki"
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

// IDPAddr is where the demo OpenID Provider listens when the port is free.
const IDPAddr = "127.0.0.1:9400"

type options struct {
	binDir      string
	dataDir     string
	trustDomain string
	idpUsers    string
	anyPort     bool
	redis       string
	nats        string
}

func (o options) pkiDir() string { return filepath.Join(o.dataDir, "pki") }

// Main parses args, starts everything and blocks until ctx ends.
func Main(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("jitid-dev", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.binDir, "bin-dir", "bin", "directory holding the issuer, policy and audit binaries")
	fs.StringVar(&o.dataDir, "data-dir", ".jitid", "directory for NATS, Redis and audit data, the CA and SVIDs (pki/) and the IdP configuration")
	fs.StringVar(&o.trustDomain, "trust-domain", "jitid.local", "SPIFFE trust domain of the local CA")
	fs.StringVar(&o.idpUsers, "idp-users", "dev/cmd/jitid-idp/demo-users.json", "users of the demo OpenID Provider")
	fs.BoolVar(&o.anyPort, "any-port", false, "listen on free ports chosen by the kernel instead of the default ones (the summary and addrs.env say which)")
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
			if !o.anyPort {
				port = 4222
			}
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
		port := 6379
		if o.anyPort {
			port = 0
		}
		r, err := localinfra.StartRedis(ctx, localinfra.RedisOptions{
			Dir: absPath(filepath.Join(o.dataDir, "redis")), Port: port, AppendOnly: true,
		})
		if err != nil {
			return err
		}
		cleanups = append(cleanups, r.Stop)
		o.redis = r.Addr()
		redisNote = "redis-server, AOF in " + filepath.Join(o.dataDir, "redis")
	}

	pki, err := devpki.Ensure(devpki.Options{Dir: o.pkiDir(), TrustDomain: o.trustDomain})
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, id := range devpki.Identities(o.trustDomain) {
		ids[id.Name] = id.ID
	}
	// The SVIDs live 30 days; renewing every hour keeps a long-running
	// stack valid, and the services pick the new files up without a restart.
	go renewPKI(ctx, o, say)

	idpProc, err := startIDP(ctx, o, out)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if err := idpProc.Stop(); err != nil {
			say("%v", err)
		}
	})
	idpURL := "http://" + idpProc.Addr("http")
	idpConfig := filepath.Join(o.dataDir, "idp.json")
	if err := WriteIDPConfig(idpConfig, idpURL); err != nil {
		return err
	}

	tlsFlags := func(name string) []string {
		p := pki.SVIDs[name]
		return []string{"-tls-cert", absPath(p.Cert), "-tls-key", absPath(p.Key), "-tls-bundle", absPath(pki.CA)}
	}
	common := []string{"-log-format", "text", "-admins", ids["admin"]}
	addr := func(def string) string {
		if o.anyPort {
			return "127.0.0.1:0"
		}
		return def
	}
	procs := map[string]*launch.Process{}
	// Each service's flags may name one started before it (the issuer
	// names policy's bound address).
	specs := []func() launch.Spec{
		func() launch.Spec {
			return service("policy", o, common, tlsFlags("policy"),
				"-grpc-addr", addr(PolicyAddr), "-admin-addr", addr("127.0.0.1:9092"), "-authzen-addr", addr("127.0.0.1:8092"),
				"-allowed-clients", ids["issuer"]+","+ids["admin"],
				"-evaluators", ids["issuer"])
		},
		func() launch.Spec {
			return service("audit", o, common, tlsFlags("audit"),
				"-grpc-addr", addr(AuditAddr), "-admin-addr", addr("127.0.0.1:9093"),
				"-nats-url", o.nats, "-audit-dsn", "sqlite://"+absPath(filepath.Join(o.dataDir, "audit.db")),
				"-allowed-clients", ids["auditor"]+","+ids["admin"],
				"-auditors", ids["auditor"])
		},
		func() launch.Spec {
			return service("issuer", o, common, tlsFlags("issuer"),
				"-grpc-addr", addr(IssuerAddr), "-admin-addr", addr("127.0.0.1:9091"),
				"-nats-url", o.nats, "-redis-addr", o.redis,
				"-policy-addr", procs["policy"].Addr("grpc"), "-policy-id", ids["policy"],
				"-allowed-clients", ids["platform"]+","+ids["platform-b"]+","+ids["admin"],
				"-idp-config", absPath(idpConfig))
		},
	}
	exited := make(chan string, len(specs)+1)
	watch := func(p *launch.Process) {
		if done := p.Exited(); done != nil {
			<-done
			exited <- p.Name()
		}
	}
	go watch(idpProc)
	for _, spec := range specs {
		s := spec()
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
		go watch(p)
		if err := waitReady(ctx, p); err != nil {
			return err
		}
	}
	procs["idp"] = idpProc

	files := clientFiles(pki)
	addrs := map[string]string{
		"JITID_ISSUER_ADDR":   procs["issuer"].Addr("grpc"),
		"JITID_POLICY_ADDR":   procs["policy"].Addr("grpc"),
		"JITID_AUDIT_ADDR":    procs["audit"].Addr("grpc"),
		"JITID_NATS_URL":      o.nats,
		"JITID_REDIS_ADDR":    o.redis,
		"JITID_IDP_URL":       idpURL,
		"JITID_CA_FILE":       files.ca,
		"JITID_PLATFORM_CERT": files.cert["platform"],
		"JITID_PLATFORM_KEY":  files.key["platform"],
		"JITID_AUDITOR_CERT":  files.cert["auditor"],
		"JITID_AUDITOR_KEY":   files.key["auditor"],
		"JITID_ADMIN_CERT":    files.cert["admin"],
		"JITID_ADMIN_KEY":     files.key["admin"],
	}
	writeSummary(out, summary{
		procs: procs, ids: ids, files: files, trustDomain: o.trustDomain, pkiDir: o.pkiDir(),
		nats: o.nats, natsNote: natsNote, redis: o.redis, redisNote: redisNote, idpURL: idpURL, idpUsers: o.idpUsers,
	})
	if err := writeAddrs(filepath.Join(o.dataDir, "addrs.env"), addrs); err != nil {
		return err
	}
	say("addresses and client certificate paths written to %s (. %s)", filepath.Join(o.dataDir, "addrs.env"), filepath.Join(o.dataDir, "addrs.env"))

	select {
	case <-ctx.Done():
		say("stopping")
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited (log %s); stopping the suite", name, procs[name].LogPath())
	}
}

// service returns the Spec of one jitid service of the stack.
func service(name string, o options, common, tls []string, args ...string) launch.Spec {
	args = append(append(args, tls...), common...)
	s := launch.Service(name, filepath.Join(o.binDir, name), filepath.Join(o.dataDir, name+".log"), args...)
	// The launcher's health probe is plaintext, which an mTLS server
	// refuses; waitReady asks the admin listener's /readyz instead.
	s.Health = false
	return s
}

// startIDP starts the demo OpenID Provider on its usual port when that is
// free, on another otherwise.
func startIDP(ctx context.Context, o options, out io.Writer) (*launch.Process, error) {
	path := filepath.Join(o.binDir, "jitid-idp")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("jitid-idp binary not found at %s (run make build): %w", path, err)
	}
	addr := IDPAddr
	if l, err := net.Listen("tcp", addr); err == nil && !o.anyPort {
		_ = l.Close()
	} else {
		if err == nil {
			_ = l.Close()
		}
		addr = "127.0.0.1:0"
	}
	p := launch.New(launch.Spec{
		Name: "idp", Path: path, LogPath: filepath.Join(o.dataDir, "idp.log"),
		Args:   []string{"-http", addr, "-users", o.idpUsers},
		Output: &prefixWriter{w: out, prefix: fmt.Sprintf("%-6s | ", "idp")},
	})
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// waitReady polls the admin listener's /readyz until the service is ready
// (its stores connected), the process exits or ctx ends.
func waitReady(ctx context.Context, p *launch.Process) error {
	url := "http://" + p.Addr("admin") + "/readyz"
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited before it was ready (log %s):\n%s", p.Name(), p.LogPath(), launch.Tail(p.LogPath(), 20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s (last: %s); log %s", p.Name(), url, last, p.LogPath())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const readyTimeout = 30 * time.Second

func renewPKI(ctx context.Context, o options, say func(string, ...any)) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := devpki.Ensure(devpki.Options{Dir: o.pkiDir(), TrustDomain: o.trustDomain})
			switch {
			case err != nil:
				say("renewing certificates: %v", err)
			case len(res.Issued) > 0:
				say("renewed certificates: %s", strings.Join(res.Issued, ", "))
			}
		}
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
