package suite

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/jitid/jitid/services/policy/policies"
)

// TrustDomain is the SPIFFE trust domain of the suite's CA.
const TrustDomain = "jitid.local"

// ID returns the SPIFFE ID of one identity of the suite (the names of
// `jitid-dev pki`: issuer, policy, audit, platform, admin, auditor).
func ID(name string) string {
	switch name {
	case "platform":
		return "spiffe://" + TrustDomain + "/platform/demo"
	case "platform-b":
		return "spiffe://" + TrustDomain + "/platform/other"
	}
	return "spiffe://" + TrustDomain + "/" + name
}

// writePKI runs `jitid-dev pki` into WorkDir/pki: a CA and an SVID for
// every service and caller, as make run uses.
func (s *Suite) writePKI(ctx context.Context) error {
	s.pkiDir = filepath.Join(s.opts.WorkDir, "pki")
	cmd := exec.CommandContext(ctx, filepath.Join(s.opts.BinDir, "jitid-dev"), "pki", "-dir", s.pkiDir, "-trust-domain", TrustDomain) //nolint:gosec // G204: the binary the suite was given
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("jitid-dev pki: %w: %s", err, out)
	}
	return nil
}

// tlsArgs returns a service's certificate flags, its allow-list of
// callers (and the admin) and extra (flags naming identities); nothing
// when the suite runs in plaintext.
func (s *Suite) tlsArgs(name string, clients []string, extra ...string) []string {
	if !s.opts.MTLS {
		return nil
	}
	allowed := ID("admin")
	for _, c := range clients {
		allowed += "," + ID(c)
	}
	return append([]string{
		"-tls-cert", filepath.Join(s.pkiDir, name+".pem"), "-tls-key", filepath.Join(s.pkiDir, name+"-key.pem"),
		"-tls-bundle", filepath.Join(s.pkiDir, "ca.pem"), "-allowed-clients", allowed, "-admins", ID("admin"),
	}, extra...)
}

// Creds returns the transport credentials of a client calling as the
// identity name (platform at the issuer, issuer at policy, auditor at
// audit); plaintext when the suite runs without TLS.
func (s *Suite) Creds(name string) (credentials.TransportCredentials, error) {
	if !s.opts.MTLS {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(filepath.Join(s.pkiDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s/ca.pem holds no certificate", s.pkiDir)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(s.pkiDir, name+".pem"), filepath.Join(s.pkiDir, name+"-key.pem"))
	if err != nil {
		return nil, err
	}
	// The services' SVIDs also name 127.0.0.1, so the standard host
	// name check applies, as for grpcurl.
	return credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}), nil
}

// waitReady polls a service's admin /readyz: the launcher's health probe
// is plaintext, which an mTLS server refuses.
func waitReady(ctx context.Context, p *Proc) error {
	url := "http://" + p.Addr("admin") + "/readyz"
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", p.Name, url, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("%s exited before it was ready; see %s", p.Name, p.LogPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writePolicySet writes the built-in policy set and its scope catalogue
// into WorkDir/policy, with one more policy: the load's platforms may
// assert their delegators (the load sends no subject tokens, so that the
// figures are the issuer's and not an identity provider's).
func writePolicySet(workDir string) (string, error) {
	dir := filepath.Join(workDir, "policy")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	err := fs.WalkDir(policies.Default(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Default(), path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o600)
	})
	if err != nil {
		return "", err
	}
	var cedar strings.Builder
	for _, p := range []string{"platform", "platform-b"} {
		fmt.Fprintf(&cedar, "@id(%q)\npermit (principal == Jitid::Platform::%q, action == Jitid::Action::\"delegator:assert\", resource is Jitid::Delegator);\n",
			"bench-"+p+"-may-assert", ID(p))
	}
	return dir, os.WriteFile(filepath.Join(dir, "bench-assert.cedar"), []byte(cedar.String()), 0o600)
}
