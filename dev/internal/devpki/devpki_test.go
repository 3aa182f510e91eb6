package devpki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jitid/jitid/dev/internal/devpki"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureWritesAnSVIDPerIdentityThatVerifiesForServerAndClient(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	res, err := devpki.Ensure(devpki.Options{Dir: dir, TrustDomain: "jitid.local"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, res.CA))
	want := map[string]string{
		"issuer": "spiffe://jitid.local/issuer", "policy": "spiffe://jitid.local/policy",
		"audit": "spiffe://jitid.local/audit", "platform": "spiffe://jitid.local/platform/demo",
		"platform-b": "spiffe://jitid.local/platform/other",
		"admin":      "spiffe://jitid.local/admin", "auditor": "spiffe://jitid.local/auditor",
	}
	if len(res.SVIDs) != len(want) {
		t.Errorf("SVIDs = %v, want %d", res.SVIDs, len(want))
	}
	for name, id := range want {
		p, ok := res.SVIDs[name]
		if !ok {
			t.Errorf("no SVID for %s", name)
			continue
		}
		if p.Cert != devpki.CertPath(dir, name) || p.Key != devpki.KeyPath(dir, name) {
			t.Errorf("%s paths = %+v", name, p)
		}
		c := readCert(t, p.Cert)
		if len(c.URIs) != 1 || c.URIs[0].String() != id {
			t.Errorf("%s URI SANs = %v, want exactly %s", name, c.URIs, id)
		}
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s key is %T, want ECDSA P-256", name, c.PublicKey)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("%s does not verify for %v: %v", name, usage, err)
			}
		}
		if name == "issuer" {
			if err := c.VerifyHostname("127.0.0.1"); err != nil {
				t.Errorf("issuer's SVID is not valid for 127.0.0.1 (grpcurl checks it): %v", err)
			}
			if err := c.VerifyHostname("issuer"); err != nil {
				t.Errorf("issuer's SVID is not valid for its compose host name: %v", err)
			}
		}
		fi, err := os.Stat(p.Key)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", p.Key, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem: %v, %v; want mode 0600", fi, err)
	}
}

func TestEnsureKeepsValidFilesAndRenewsNearExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	o := devpki.Options{Dir: dir, TrustDomain: "jitid.local", Now: func() time.Time { return now }}
	if _, err := devpki.Ensure(o); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(devpki.CertPath(dir, "issuer"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := devpki.Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Issued) != 0 {
		t.Errorf("second run issued %v, want nothing", res.Issued)
	}
	if after, _ := os.ReadFile(devpki.CertPath(dir, "issuer")); string(after) != string(before) {
		t.Error("a valid SVID was rewritten")
	}

	// 25 of 30 days on: every SVID is renewed, the year-long CA kept.
	now = now.Add(25 * 24 * time.Hour)
	res, err = devpki.Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(res.Issued, "ca") || len(res.Issued) != 7 {
		t.Errorf("near SVID expiry issued %v, want the seven SVIDs and not the CA", res.Issued)
	}
	if c := readCert(t, devpki.CertPath(dir, "issuer")); c.NotAfter.Before(now.Add(29 * 24 * time.Hour)) {
		t.Errorf("renewed SVID ends %v, want 30 days after %v", c.NotAfter, now)
	}
}

func TestEnsureReissuesADamagedSVIDAndEverySVIDOfANewCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := devpki.Options{Dir: dir, TrustDomain: "jitid.local"}
	if _, err := devpki.Ensure(o); err != nil {
		t.Fatal(err)
	}
	// A key that belongs to another certificate.
	other, err := os.ReadFile(devpki.KeyPath(dir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(devpki.KeyPath(dir, "policy"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := devpki.Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Issued, []string{"policy"}) {
		t.Errorf("after a mismatched key issued %v, want [policy]", res.Issued)
	}

	// Another trust domain: a new CA, and every SVID from it.
	o.TrustDomain = "other.test"
	o.Identities = []devpki.Identity{{Name: "issuer", ID: "spiffe://other.test/issuer"}}
	res, err = devpki.Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Issued, []string{"ca", "issuer"}) {
		t.Errorf("for another trust domain issued %v, want [ca issuer]", res.Issued)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, res.CA))
	if _, err := readCert(t, devpki.CertPath(dir, "issuer")).Verify(x509.VerifyOptions{Roots: roots}); err != nil {
		t.Errorf("issuer SVID does not chain to the new CA: %v", err)
	}
}

func TestEnsureRefusesBadSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    devpki.Options
	}{
		{"no dir", devpki.Options{TrustDomain: "jitid.local"}},
		{"no trust domain", devpki.Options{Dir: t.TempDir()}},
		{"trust domain with a path", devpki.Options{Dir: t.TempDir(), TrustDomain: "jitid.local/x"}},
		{"ID outside the trust domain", devpki.Options{Dir: t.TempDir(), TrustDomain: "jitid.local",
			Identities: []devpki.Identity{{Name: "x", ID: "spiffe://evil.test/x"}}}},
		{"name with a slash", devpki.Options{Dir: t.TempDir(), TrustDomain: "jitid.local",
			Identities: []devpki.Identity{{Name: "../x", ID: "spiffe://jitid.local/x"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := devpki.Ensure(tc.o); err == nil {
				t.Error("Ensure succeeded, want an error")
			}
		})
	}
}
