package devstack_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/dev/internal/devstack"
	"github.com/jitid/jitid/testkit"
	"github.com/jitid/jitid/testkit/gobin"
	"github.com/jitid/jitid/testkit/testserver"
)

// syncBuffer is the stack's output, written by its goroutines and read by
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stack runs devstack.Main on free ports over freshly built binaries and
// returns the variables of its addrs.env.
func stack(t *testing.T) (env map[string]string, dataDir string) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if testserver.InCI() {
			t.Fatal("redis-server is not on PATH (apt-get install redis-server)")
		}
		t.Skip("needs redis-server on PATH")
	}
	binDir := t.TempDir()
	for name, target := range map[string]gobin.Target{
		"issuer":    {Module: "github.com/jitid/jitid/services/issuer", Package: "./cmd/issuer"},
		"policy":    {Module: "github.com/jitid/jitid/services/policy", Package: "./cmd/policy"},
		"audit":     {Module: "github.com/jitid/jitid/services/audit", Package: "./cmd/audit"},
		"jitid-idp": {Module: "github.com/jitid/jitid/dev", Package: "./cmd/jitid-idp"},
	} {
		if err := os.Symlink(gobin.Build(t, target), filepath.Join(binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	dataDir = filepath.Join(t.TempDir(), "data")
	users, err := filepath.Abs("../../cmd/jitid-idp/demo-users.json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- devstack.Main(ctx, []string{"-bin-dir", binDir, "-data-dir", dataDir, "-any-port", "-idp-users", users},
			out, func(string) string { return "" })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Main() = %v", err)
		}
		if t.Failed() {
			t.Logf("stack output:\n%s", out.String())
		}
	})
	path := filepath.Join(dataDir, "addrs.env")
	testkit.Eventually(t, "the stack to write "+path, 90*time.Second, 100*time.Millisecond, func() (string, bool) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("Main() returned early: %v\n%s", err, out.String())
		default:
		}
		_, err := os.Stat(path)
		return out.String(), err == nil
	})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() //nolint:errcheck // read only
	env = map[string]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
	}
	return env, dataDir
}

func tlsCreds(t *testing.T, caFile, certFile, keyFile string) credentials.TransportCredentials {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg)
}

func healthCode(t *testing.T, addr string, creds credentials.TransportCredentials) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("%s health = %v", addr, resp.GetStatus())
	}
	return status.Code(err)
}

// TestMakeRun runs the stack as make run does (one stack for the subtests:
// it takes a while to start).
func TestMakeRun(t *testing.T) {
	env, dataDir := stack(t)
	t.Run("ServesOnlyMutualTLSToItsAllowLists", func(t *testing.T) { servesOnlyMutualTLS(t, env) })
	t.Run("TrustsItsDemoIdentityProvider", func(t *testing.T) { trustsItsDemoIDP(t, env, dataDir) })
}

// servesOnlyMutualTLS checks each link from outside: the admin's
// certificate reaches every service (as grpcurl does, checking the host
// name), a client with no certificate, in plaintext or with a certificate
// from another CA is refused, and each service refuses an identity outside
// its allow-list.
func servesOnlyMutualTLS(t *testing.T, env map[string]string) {
	ca := env["JITID_CA_FILE"]
	admin := tlsCreds(t, ca, env["JITID_ADMIN_CERT"], env["JITID_ADMIN_KEY"])
	platform := tlsCreds(t, ca, env["JITID_PLATFORM_CERT"], env["JITID_PLATFORM_KEY"])
	auditor := tlsCreds(t, ca, env["JITID_AUDITOR_CERT"], env["JITID_AUDITOR_KEY"])
	noCert := tlsCreds(t, ca, "", "")
	foreign := foreignCreds(t, ca)
	for _, tc := range []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
		want  codes.Code
	}{
		{"admin to issuer", env["JITID_ISSUER_ADDR"], admin, codes.OK},
		{"admin to policy", env["JITID_POLICY_ADDR"], admin, codes.OK},
		{"admin to audit", env["JITID_AUDIT_ADDR"], admin, codes.OK},
		{"platform to issuer", env["JITID_ISSUER_ADDR"], platform, codes.OK},
		{"auditor to audit", env["JITID_AUDIT_ADDR"], auditor, codes.OK},
		{"plaintext to issuer", env["JITID_ISSUER_ADDR"], insecure.NewCredentials(), codes.Unavailable},
		{"plaintext to audit", env["JITID_AUDIT_ADDR"], insecure.NewCredentials(), codes.Unavailable},
		{"no client certificate to issuer", env["JITID_ISSUER_ADDR"], noCert, codes.Unavailable},
		{"another CA's certificate to issuer", env["JITID_ISSUER_ADDR"], foreign, codes.Unavailable},
		{"platform to policy", env["JITID_POLICY_ADDR"], platform, codes.Unavailable},
		{"platform to audit", env["JITID_AUDIT_ADDR"], platform, codes.Unavailable},
		{"auditor to issuer", env["JITID_ISSUER_ADDR"], auditor, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthCode(t, tc.addr, tc.creds); got != tc.want {
				t.Errorf("health over %s = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// foreignCreds returns client credentials whose certificate names the
// demo platform's SPIFFE ID but comes from a CA the stack does not trust.
func foreignCreds(t *testing.T, ca string) credentials.TransportCredentials {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://jitid.local/platform/demo")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return credentials.NewTLS(&tls.Config{
		RootCAs: roots, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
	})
}

// trustsItsDemoIDP: the issuer's -idp-config names the demo provider by
// the issuer its discovery document states and its tokens carry, for the
// audience they are issued to.
func trustsItsDemoIDP(t *testing.T, env map[string]string, dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "idp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg devstack.IDPConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) != 1 || cfg.Providers[0].Issuer != env["JITID_IDP_URL"] {
		t.Fatalf("idp.json providers = %+v, want one with issuer %s", cfg.Providers, env["JITID_IDP_URL"])
	}
	var disc struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, env["JITID_IDP_URL"]+"/.well-known/openid-configuration", nil, &disc)
	if disc.Issuer != cfg.Providers[0].Issuer {
		t.Errorf("discovery issuer %q, idp.json issuer %q", disc.Issuer, cfg.Providers[0].Issuer)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	getJSON(t, env["JITID_IDP_URL"]+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}, &tok)
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT: %d parts", len(parts))
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string   `json:"iss"`
		Aud []string `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != cfg.Providers[0].Issuer || len(claims.Aud) == 0 || claims.Aud[0] != cfg.Providers[0].Audiences[0] {
		t.Errorf("token iss %q aud %v, idp.json issuer %q audiences %v", claims.Iss, claims.Aud, cfg.Providers[0].Issuer, cfg.Providers[0].Audiences)
	}
}

// getJSON GETs u, or POSTs form as demo-alice's client when form is set.
func getJSON(t *testing.T, u string, form url.Values, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	if form != nil {
		req, err = http.NewRequestWithContext(context.Background(), http.MethodPost, u, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("demo-alice", "demo-alice-secret")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(errors.Join(errors.New(u), err))
	}
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}
