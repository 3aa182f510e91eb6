package storeauth

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitid/jitid/pkg/servicecmd"
	"github.com/jitid/jitid/testkit/testca"
)

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretFileIsReadWithoutItsLineBreak(t *testing.T) {
	p := writeFile(t, "pw", "s3cret-value\n", 0o600)
	got, err := ReadSecretFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != "s3cret-value" {
		t.Fatalf("ReadSecretFile = %q, want %q", got, "s3cret-value")
	}
}

func TestSecretFileReadableByGroupOrOthersIsRefusedWithoutQuotingIt(t *testing.T) {
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		p := writeFile(t, "pw", "s3cret-value", mode)
		_, err := ReadSecretFile(p)
		if err == nil {
			t.Fatalf("mode %04o: ReadSecretFile accepted a shared secret file", mode)
		}
		if strings.Contains(err.Error(), "s3cret-value") {
			t.Fatalf("mode %04o: error quotes the secret: %v", mode, err)
		}
		if !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %04o: error %q does not say how to fix it", mode, err)
		}
	}
}

func TestEmptySecretFileIsRefused(t *testing.T) {
	if _, err := ReadSecretFile(writeFile(t, "pw", "\n", 0o600)); err == nil {
		t.Fatal("ReadSecretFile accepted an empty password")
	}
}

func TestNATSValidateReportsEveryConflictAtOnce(t *testing.T) {
	n := NATS{Creds: "a.creds", NKey: "seed", PasswordFile: "pw", TLS: TLSFiles{Cert: "c.pem"}}
	errs := n.Validate()
	joined := errors.Join(errs...)
	for _, want := range []string{"-nats-password-file: needs -nats-user", "-nats-creds: conflicts with -nats-nkey, -nats-user", "-nats-tls-cert"} {
		if !strings.Contains(joined.Error(), want) {
			t.Errorf("Validate() = %v, missing %q", joined, want)
		}
	}
	for _, err := range errs {
		if !errors.Is(err, servicecmd.ErrInvalid) {
			t.Errorf("%v does not wrap ErrInvalid", err)
		}
	}
}

func TestNATSWithoutCredentialsAddsNoOption(t *testing.T) {
	var n NATS
	if errs := n.Validate(); len(errs) != 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	opts, err := n.Options()
	if err != nil || len(opts) != 0 {
		t.Fatalf("Options() = %d options, %v; want none", len(opts), err)
	}
}

func TestNATSPasswordFileSharedWithOthersIsRefused(t *testing.T) {
	n := NATS{User: "audit", PasswordFile: writeFile(t, "pw", "s3cret-value", 0o644)}
	_, err := n.Options()
	if err == nil || strings.Contains(err.Error(), "s3cret-value") {
		t.Fatalf("Options() = %v, want a refusal that does not quote the password", err)
	}
}

func TestTLSIsAtLeast12AndVerifiesAgainstTheGivenCA(t *testing.T) {
	ca := testca.New(t, "store")
	f := ca.WriteSVID(t, t.TempDir(), "spiffe://jitid.test/issuer")
	c, err := (TLSFiles{CA: f.Bundle, Cert: f.Cert, Key: f.Key}).Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", c.MinVersion)
	}
	if c.RootCAs == nil || len(c.Certificates) != 1 || c.InsecureSkipVerify {
		t.Errorf("Config() = roots %v, %d certificates, skip verify %v; want the CA and the client certificate", c.RootCAs != nil, len(c.Certificates), c.InsecureSkipVerify)
	}
	if _, err := (TLSFiles{CA: writeFile(t, "ca.pem", "", 0o644)}).Config(); err == nil {
		t.Error("Config accepted a CA file without a certificate")
	}
	if c, err := (TLSFiles{}).Config(); err != nil || c != nil {
		t.Errorf("Config() without files = %v, %v; want nil (plaintext as before)", c, err)
	}
}
