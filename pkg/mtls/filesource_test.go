package mtls_test

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/mtls"
)

func TestRotatedFilesServedWithoutRestart(t *testing.T) {
	t.Parallel()
	caOld, caNew := newCA(t, "jitid.test old"), newCA(t, "jitid.test new")
	dir := t.TempDir()
	cfg := writeSVID(t, dir, caOld, policyID)
	cfg.PollInterval = 10 * time.Millisecond
	server, err := mtls.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Close(); err != nil {
			t.Error(err)
		}
	})
	addr, rec := serve(t, mtls.ServerCredentials(server, mtls.AllowIDs(spiffeid.RequireFromString(issuerID))))

	// The client knows only the new CA: it can talk to the server only once
	// the server presents a certificate of the new CA and trusts the new CA
	// for the client's, that is once all three files were picked up.
	client := mtls.ClientCredentials(fileSource(t, caNew, issuerID), mtls.AllowIDs(spiffeid.RequireFromString(policyID)))
	if _, err := call(t, addr, client); status.Code(err) != codes.Unavailable {
		t.Fatalf("Check before rotation: got %v, want Unavailable", err)
	}

	before, err := server.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	writeSVID(t, dir, caNew, policyID)

	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := call(t, addr, client)
		if err == nil {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("rotated files not served after 10s: last call %v", err)
		case <-tick.C:
		}
	}
	after, err := server.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if after.Certificates[0].SerialNumber.Cmp(before.Certificates[0].SerialNumber) == 0 {
		t.Error("source still returns the certificate from before the rotation")
	}
	if calls, _ := rec.seen(); calls != 1 {
		t.Errorf("server handled %d calls, want 1 (after the rotation)", calls)
	}
}

func TestHalfWrittenRotationKeepsPreviousSVID(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	dir := t.TempDir()
	cfg := writeSVID(t, dir, ca, policyID)
	cfg.PollInterval = time.Hour // only the explicit Reload below reads the files
	src, err := mtls.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}()
	before, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}

	// The certificate is rotated, its key not yet: they do not match.
	certPEM, _ := ca.Issue(t, policyID)
	if err := os.WriteFile(cfg.CertFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate with another certificate's key")
	}
	got, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got != before {
		t.Error("a half-written rotation replaced the SVID")
	}
}

func TestWorldReadableKeyRefused(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		cfg := writeSVID(t, t.TempDir(), newCA(t, "jitid.test"), policyID)
		if err := os.Chmod(cfg.KeyFile, mode); err != nil {
			t.Fatal(err)
		}
		src, err := mtls.NewFileSource(cfg)
		if !errors.Is(err, mtls.ErrKeyPermissions) {
			t.Errorf("key mode %#o: got %v, want ErrKeyPermissions", mode, err)
		}
		if err == nil {
			if err := src.Close(); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestKeyMadeReadableAfterStartNotReloaded(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "jitid.test")
	dir := t.TempDir()
	cfg := writeSVID(t, dir, ca, policyID)
	cfg.PollInterval = time.Hour
	src, err := mtls.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}()
	before, _ := src.GetX509SVID()

	writeSVID(t, dir, ca, policyID)
	if err := os.Chmod(cfg.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); !errors.Is(err, mtls.ErrKeyPermissions) {
		t.Errorf("Reload with a world-readable key: got %v, want ErrKeyPermissions", err)
	}
	if got, _ := src.GetX509SVID(); got != before {
		t.Error("the SVID with a world-readable key was loaded")
	}
}

func TestInsecureKeyPermissionsAllowedWithWarningThatOmitsTheKey(t *testing.T) {
	t.Parallel()
	cfg := writeSVID(t, t.TempDir(), newCA(t, "jitid.test"), policyID)
	if err := os.Chmod(cfg.KeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.AllowInsecureKeyPermissions = true
	src, err := mtls.NewFileSource(cfg)
	if err != nil {
		t.Fatalf("NewFileSource with AllowInsecureKeyPermissions: %v", err)
	}
	defer func() {
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}()

	if !bytes.Contains(logs.Bytes(), []byte("level=WARN")) {
		t.Errorf("no warning logged for a world-readable key; logs:\n%s", logs.Bytes())
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	if bytes.Contains(logs.Bytes(), []byte(base64.StdEncoding.EncodeToString(block.Bytes)[:32])) {
		t.Error("the private key appears in the logs")
	}
}

func TestFileSourceServesOnlyItsTrustDomain(t *testing.T) {
	t.Parallel()
	src := fileSource(t, newCA(t, "jitid.test"), policyID)
	if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("jitid.test")); err != nil {
		t.Errorf("bundle for the SVID's trust domain: %v", err)
	}
	if b, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.test")); err == nil {
		t.Errorf("bundle for another trust domain: %v", b)
	}
}

func TestClosedFileSourceFails(t *testing.T) {
	t.Parallel()
	src := fileSource(t, newCA(t, "jitid.test"), policyID)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, mtls.ErrSourceClosed) {
		t.Errorf("GetX509SVID after Close: got %v, want ErrSourceClosed", err)
	}
}

// syncBuffer is a bytes.Buffer the poller may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}
