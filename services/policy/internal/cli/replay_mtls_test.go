package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitid/jitid/services/policy/internal/cli"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/launch"
	"github.com/jitid/jitid/testkit/testca"
	"github.com/jitid/jitid/testkit/testserver"
)

func TestReplayTalksOnlyToTheConfiguredAuditIDOverMTLS(t *testing.T) {
	t.Parallel()
	const (
		auditID  = "spiffe://jitid.test/audit"
		replayID = "spiffe://jitid.test/policy-replay"
	)
	ca := testca.New(t, "jitid.test")
	dir := t.TempDir()
	srvDir, cliDir := filepath.Join(dir, "audit"), filepath.Join(dir, "replay")
	for _, d := range []string{srvDir, cliDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	srv, own := ca.WriteSVID(t, srvDir, auditID), ca.WriteSVID(t, cliDir, replayID)
	bin := gobin.Build(t, gobin.Target{Module: "github.com/jitid/jitid/services/audit", Package: "./cmd/audit"})
	ns := testserver.Namespace(t)
	spec := launch.Service("audit", bin, filepath.Join(dir, "audit.log"),
		"-grpc-addr", "127.0.0.1:0", "-admin-addr", "",
		"-audit-dsn", "sqlite://"+filepath.Join(dir, "audit.db"),
		"-nats-url", testserver.NATSURL(t), "-stream", "EVENTS_"+ns, "-subject-prefix", ns+".events",
		"-consumer", "audit-"+ns, "-log-format", "text",
		"-tls-cert", srv.Cert, "-tls-key", srv.Key, "-tls-bundle", srv.Bundle, "-allowed-clients", replayID,
		"-auditors", replayID)
	// The launcher's health probe is plaintext, which an mTLS server
	// refuses: the serving line is enough here.
	spec.Health = false
	p := launch.ForTest(t, spec)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	replay := func(id string) (int, string) {
		return run(t, "replay", "-audit-addr", p.Addr("grpc"), "-timeout", "10s",
			"-tls-cert", own.Cert, "-tls-key", own.Key, "-tls-bundle", own.Bundle, "-audit-id", id)
	}

	// The serving line comes before audit's store is open; until then its
	// queries answer UNAVAILABLE, so the first replay waits for the store.
	testkit.Eventually(t, "replay against the configured audit ID to succeed", 30*time.Second, 200*time.Millisecond, func() (string, bool) {
		code, out := replay(auditID)
		return out, code == cli.ExitOK
	})
	if code, out := replay("spiffe://jitid.test/someone-else"); code == cli.ExitOK || !strings.Contains(out, "not in the allow-list") {
		t.Errorf("replay against an audit server outside -audit-id = %d, want a refused handshake:\n%s", code, out)
	}
	if code, out := run(t, "replay", "-audit-addr", p.Addr("grpc"), "-timeout", "10s"); code == cli.ExitOK {
		t.Errorf("plaintext replay against an mTLS audit service = %d, want a failure:\n%s", code, out)
	}
	if code, out := run(t, "replay", "-tls-cert", own.Cert); code != cli.ExitUsage || !strings.Contains(out, "-tls-key") || !strings.Contains(out, "-audit-id") {
		t.Errorf("replay with -tls-cert alone = %d, want usage naming -tls-key and -audit-id:\n%s", code, out)
	}
}
