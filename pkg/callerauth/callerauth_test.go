package callerauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/jitid/jitid/pkg/callerauth"
	"github.com/jitid/jitid/testkit"
)

const (
	audience  = "spiffe://jitid.test/issuer"
	svidID    = "spiffe://jitid.test/platform/support-bot"
	clientID  = "reports-cron"
	otherTD   = "spiffe://other.test/platform/intruder"
	otherName = "billing-batch"
)

// signer is a key and the kid it signs under.
type signer struct {
	kid string
	key crypto.Signer
}

func newSigner(t *testing.T, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(jose.ES256), Use: "sig"}
}

// sign returns a compact JWS of claims signed with alg (ES256 when empty).
func (s signer) sign(t *testing.T, claims any, alg jose.SignatureAlgorithm) string {
	t.Helper()
	if alg == "" {
		alg = jose.ES256
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeJWKS(t *testing.T, dir, name string, keys ...jose.JSONWebKey) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

func claimsFor(sub string, now time.Time) jwt.Claims {
	return jwt.Claims{
		Subject: sub, Audience: jwt.Audience{audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}
}

// fixture is a verifier over a trust domain's JWT authority (a file bound
// to spiffe://jitid.test) and one client's key (bound to reports-cron),
// and the keys that sign for them.
type fixture struct {
	v               *callerauth.Verifier
	authority, cron signer
	now             time.Time
	dir             string
}

func newFixture(t *testing.T, extra ...callerauth.KeyFile) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{authority: newSigner(t, "td-key-1"), cron: newSigner(t, "cron-1"), now: time.Now(), dir: dir}
	files := append([]callerauth.KeyFile{
		{Owner: "spiffe://jitid.test", Path: writeJWKS(t, dir, "bundle.jwks", f.authority.jwk())},
		{Owner: clientID, Path: writeJWKS(t, dir, "cron.jwks", f.cron.jwk())},
	}, extra...)
	v, err := callerauth.NewVerifier(callerauth.Config{
		Audiences: []string{audience}, Files: files, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	f.v = v
	return f
}

func TestJWTSVIDAndClientAssertionCallersAreAccepted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	assertion := claimsFor(clientID, now)
	assertion.Issuer = clientID
	assertion.ID = "a-unique-jti"
	for _, tt := range []struct {
		name, token, want string
	}{
		{"JWT-SVID", f.authority.sign(t, claimsFor(svidID, now), ""), svidID},
		{"RFC 7523 client assertion", f.cron.sign(t, assertion, ""), clientID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.v.Verify(tt.token)
			if err != nil || got != tt.want {
				t.Errorf("Verify() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestForgedExpiredMisdirectedAndUnsafeTokensAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	forger := newSigner(t, f.authority.kid) // same kid, another key
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	with := func(sub string, edit func(*jwt.Claims)) jwt.Claims {
		c := claimsFor(sub, now)
		edit(&c)
		return c
	}
	assertion := func(edit func(*jwt.Claims)) jwt.Claims {
		return with(clientID, func(c *jwt.Claims) { c.Issuer = clientID; edit(c) })
	}
	keep := func(*jwt.Claims) {}
	hmac := signer{kid: f.authority.kid}
	hs256, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("a shared secret of thirty-two bytes!")}, (&jose.SignerOptions{}).WithHeader("kid", hmac.kid))
	if err != nil {
		t.Fatal(err)
	}
	hmacTok, err := jwt.Signed(hs256).Claims(claimsFor(svidID, now)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		token string
	}{
		{"forged signature", forger.sign(t, claimsFor(svidID, now), "")},
		{"expired", f.authority.sign(t, with(svidID, func(c *jwt.Claims) {
			c.IssuedAt, c.NotBefore, c.Expiry = jwt.NewNumericDate(now.Add(-20*time.Minute)), jwt.NewNumericDate(now.Add(-20*time.Minute)), jwt.NewNumericDate(now.Add(-10*time.Minute))
		}), "")},
		{"wrong audience", f.authority.sign(t, with(svidID, func(c *jwt.Claims) { c.Audience = jwt.Audience{"spiffe://jitid.test/audit"} }), "")},
		{"no audience", f.authority.sign(t, with(svidID, func(c *jwt.Claims) { c.Audience = nil }), "")},
		{"no exp", f.authority.sign(t, with(svidID, func(c *jwt.Claims) { c.Expiry = nil }), "")},
		{"lifetime over an hour", f.authority.sign(t, with(svidID, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(2 * time.Hour)) }), "")},
		{"issued in the future", f.authority.sign(t, with(svidID, func(c *jwt.Claims) {
			c.IssuedAt, c.NotBefore = jwt.NewNumericDate(now.Add(10*time.Minute)), nil
			c.Expiry = jwt.NewNumericDate(now.Add(15 * time.Minute))
		}), "")},
		{"not yet valid", f.authority.sign(t, with(svidID, func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(3 * time.Minute)) }), "")},
		{"HMAC with the kid of a JWT authority", hmacTok},
		{"alg none", unsigned(t, claimsFor(svidID, now), f.authority.kid)},
		{"RS256 by an unknown key", signer{kid: f.authority.kid, key: rsaKey}.sign(t, claimsFor(svidID, now), jose.RS256)},
		{"SPIFFE ID of another trust domain", f.authority.sign(t, claimsFor(otherTD, now), "")},
		{"client key signing a JWT-SVID", signer{kid: f.authority.kid, key: f.cron.key}.sign(t, claimsFor(svidID, now), "")},
		{"trust domain key signing a client assertion", signer{kid: f.cron.kid, key: f.authority.key}.sign(t, assertion(keep), "")},
		{"client assertion for another client", f.cron.sign(t, with(otherName, func(c *jwt.Claims) { c.Issuer = otherName }), "")},
		{"client assertion whose iss is not its sub", f.cron.sign(t, assertion(func(c *jwt.Claims) { c.Issuer = "someone-else" }), "")},
		{"client assertion without iss", f.cron.sign(t, with(clientID, keep), "")},
		{"no sub", f.authority.sign(t, with("", keep), "")},
		{"not a JWT", "not.a.jwt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := f.v.Verify(tt.token)
			if !errors.Is(err, callerauth.ErrInvalidToken) {
				t.Fatalf("Verify() = %q, %v; want ErrInvalidToken", got, err)
			}
			t.Logf("refused: %v", err)
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q holds the token", err)
			}
		})
	}
}

// unsigned returns an "alg":"none" JWT, which go-jose will not make.
func unsigned(t *testing.T, claims jwt.Claims, kid string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT", "kid": kid}) + "." + enc(claims) + "."
}

func TestKeyFileRotationIsUsedWithoutARestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	next := newSigner(t, "td-key-2")
	tok := next.sign(t, claimsFor(svidID, time.Now()), "")
	if _, err := f.v.Verify(tok); !errors.Is(err, callerauth.ErrInvalidToken) {
		t.Fatalf("token of a key not yet in the bundle: %v, want ErrInvalidToken", err)
	}
	writeJWKS(t, f.dir, "bundle.jwks", f.authority.jwk(), next.jwk())
	testkit.Eventually(t, "the rotated bundle's new key to verify", 5*time.Second, 10*time.Millisecond, func() (string, bool) {
		_, err := f.v.Verify(tok)
		return fmt.Sprint(err), err == nil
	})
	// A broken file keeps the last good keys rather than refusing everyone.
	if err := os.WriteFile(filepath.Join(f.dir, "bundle.jwks"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // several polls
	if _, err := f.v.Verify(tok); err != nil {
		t.Errorf("after a broken rewrite: %v, want the last good keys kept", err)
	}
}

func TestKeyFilesHoldingSecretsAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv := newSigner(t, "k1")
	for _, tt := range []struct {
		name string
		key  jose.JSONWebKey
	}{
		{"symmetric key", jose.JSONWebKey{Key: []byte("a shared secret of thirty-two bytes!"), KeyID: "k1", Algorithm: "HS256"}},
		{"private key", jose.JSONWebKey{Key: priv.key, KeyID: "k1", Algorithm: "ES256"}},
		{"encryption key", jose.JSONWebKey{Key: priv.key.Public(), KeyID: "k1", Use: "enc"}},
	} {
		path := writeJWKS(t, dir, strings.ReplaceAll(tt.name, " ", "-"), tt.key)
		_, err := callerauth.NewVerifier(callerauth.Config{Audiences: []string{audience}, Files: []callerauth.KeyFile{{Owner: clientID, Path: path}}})
		if err == nil {
			t.Errorf("%s: NewVerifier() succeeded, want an error", tt.name)
		}
	}
	empty := writeJWKS(t, dir, "empty")
	if _, err := callerauth.NewVerifier(callerauth.Config{Audiences: []string{audience}, Files: []callerauth.KeyFile{{Owner: clientID, Path: empty}}}); err == nil {
		t.Error("empty key set: NewVerifier() succeeded, want an error")
	}
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		entry string
		want  callerauth.KeyFile
		ok    bool
	}{
		{"spiffe://acme.example=/etc/jitid/acme.jwks", callerauth.KeyFile{Owner: "spiffe://acme.example", Path: "/etc/jitid/acme.jwks"}, true},
		{" reports-cron = /etc/jitid/cron.jwks ", callerauth.KeyFile{Owner: "reports-cron", Path: "/etc/jitid/cron.jwks"}, true},
		{"/etc/jitid/acme.jwks", callerauth.KeyFile{}, false},
		{"spiffe://acme.example/platform/bot=/etc/jitid/bot.jwks", callerauth.KeyFile{}, false},
		{"spiffe://ACME=/x", callerauth.KeyFile{}, false},
		{"=/x", callerauth.KeyFile{}, false},
	} {
		got, err := callerauth.ParseKeyFile(tt.entry)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseKeyFile(%q) = %+v, %v; want %+v ok=%v", tt.entry, got, err, tt.want, tt.ok)
		}
	}
}

// TestWorkloadAPIBundlesVerifyJWTSVIDsOfTheirTrustDomainOnly uses a
// jwtbundle.Set, the type the Workload API's JWTSource serves.
func TestWorkloadAPIBundlesVerifyJWTSVIDsOfTheirTrustDomainOnly(t *testing.T) {
	t.Parallel()
	authority := newSigner(t, "spire-key")
	td := spiffeid.RequireTrustDomainFromString("jitid.test")
	bundles := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{authority.kid: authority.key.Public()}))
	v, err := callerauth.NewVerifier(callerauth.Config{Audiences: []string{audience}, Bundles: bundles})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Close() }()
	now := time.Now()
	if got, err := v.Verify(authority.sign(t, claimsFor(svidID, now), "")); err != nil || got != svidID {
		t.Errorf("JWT-SVID of the bundle's trust domain: %q, %v", got, err)
	}
	if _, err := v.Verify(authority.sign(t, claimsFor(otherTD, now), "")); !errors.Is(err, callerauth.ErrInvalidToken) {
		t.Errorf("JWT-SVID of another trust domain signed by this one's authority: %v, want ErrInvalidToken", err)
	}
	assertion := claimsFor(clientID, now)
	assertion.Issuer = clientID
	if _, err := v.Verify(authority.sign(t, assertion, "")); !errors.Is(err, callerauth.ErrInvalidToken) {
		t.Errorf("client assertion signed by a trust domain authority: %v, want ErrInvalidToken", err)
	}
}
