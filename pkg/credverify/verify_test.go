package credverify_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
)

const (
	testIssuer   = "https://jitid.test"
	testAudience = "tickets-api"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

type signer struct {
	priv any
	jwk  jose.JSONWebKey // public, with kid and alg
	alg  jose.SignatureAlgorithm
}

func newSigner(t testing.TB, alg jose.SignatureAlgorithm) *signer {
	t.Helper()
	var priv, pub any
	switch alg {
	case jose.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	case jose.EdDSA:
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, p
	}
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(alg), Use: "sig"}
	kid, err := credverify.Thumbprint(&jwk)
	if err != nil {
		t.Fatal(err)
	}
	jwk.KeyID = kid
	return &signer{priv: priv, jwk: jwk, alg: alg}
}

func (s *signer) keys(t testing.TB) *credverify.StaticKeys {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{s.jwk}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := credverify.NewStaticKeys(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (s *signer) sign(t testing.TB, typ string, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader(jose.HeaderKey("kid"), kid)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func goodClaims() credverify.Claims {
	return credverify.Claims{
		Claims: jwt.Claims{
			Issuer: testIssuer, Subject: "user:alice", Audience: jwt.Audience{testAudience},
			ID: "cred-1", IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		},
		Scope: "tickets:read tickets:purchase", ClientID: "agent:child",
		Act:  &credverify.Actor{Sub: "agent:child", Act: &credverify.Actor{Sub: "agent:parent"}},
		Task: credverify.TaskClaim{ID: "task-1", Purpose: "buy tickets", Sensitivity: "MEDIUM"},
	}
}

// rawToken assembles a compact JWS from a header and claims, with sig as
// the signature: for tokens no honest signer would make.
func rawToken(header map[string]any, claims any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString(sig)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	ed := newSigner(t, jose.EdDSA)
	other := newSigner(t, jose.ES256)
	pubDER, err := x509.MarshalPKIXPublicKey(es.jwk.Key)
	if err != nil {
		t.Fatal(err)
	}
	hsHeader := map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": es.jwk.KeyID}
	hsSigningInput := func() string {
		tok := rawToken(hsHeader, goodClaims(), nil)
		return tok[:strings.LastIndex(tok, ".")]
	}()
	mac := hmac.New(sha256.New, pubDER)
	mac.Write([]byte(hsSigningInput))
	hsToken := hsSigningInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	mod := func(f func(*credverify.Claims)) credverify.Claims { c := goodClaims(); f(&c); return c }
	good := es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims())
	tests := []struct {
		name   string
		keys   *signer
		token  string
		scopes []string
		want   error
	}{
		{name: "valid ES256", keys: es, token: good, scopes: []string{"tickets:read"}},
		{name: "valid EdDSA", keys: ed, token: ed.sign(t, "at+jwt", ed.jwk.KeyID, goodClaims())},
		{name: "forged: signed by another key under the issuer's kid", keys: es, token: other.sign(t, "at+jwt", es.jwk.KeyID, goodClaims()), want: credverify.ErrSignature},
		{name: "expired", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })), want: credverify.ErrExpired},
		{name: "not yet valid", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute)) })), want: credverify.ErrNotYetValid},
		{name: "wrong audience", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Audience = jwt.Audience{"other-api"} })), want: credverify.ErrAudience},
		{name: "wrong issuer", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Issuer = "https://evil.test" })), want: credverify.ErrIssuer},
		{name: "unknown kid", keys: es, token: es.sign(t, "at+jwt", "no-such-key", goodClaims()), want: credverify.ErrUnknownKey},
		{name: "alg none", keys: es, token: rawToken(map[string]any{"alg": "none", "typ": "at+jwt", "kid": es.jwk.KeyID}, goodClaims(), nil), want: credverify.ErrAlgorithm},
		{name: "HS256 keyed with the public key", keys: es, token: hsToken, want: credverify.ErrAlgorithm},
		{name: "truncated", keys: es, token: good[:len(good)-10], want: credverify.ErrInvalid},
		{name: "two parts", keys: es, token: good[:strings.LastIndex(good, ".")], want: credverify.ErrMalformed},
		{name: "oversized", keys: es, token: good + strings.Repeat("A", credverify.MaxTokenBytes), want: credverify.ErrTooLarge},
		{name: "empty", keys: es, token: "", want: credverify.ErrMalformed},
		{name: "not an access token", keys: es, token: es.sign(t, "JWT", es.jwk.KeyID, goodClaims()), want: credverify.ErrTokenType},
		{name: "missing task", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Task = credverify.TaskClaim{} })), want: credverify.ErrMissingClaim},
		{name: "scope not granted", keys: es, token: good, scopes: []string{"payments:send"}, want: credverify.ErrInsufficientScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: tt.keys.keys(t), Clock: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), tt.token, tt.scopes...)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify() = %v, want success", err)
				}
				if c.Delegator() != "user:alice" || c.Agent() != "agent:child" || c.Task.ID != "task-1" {
					t.Errorf("claims = %+v", c)
				}
				if got := c.AgentChain(); len(got) != 2 || got[1] != "agent:parent" {
					t.Errorf("AgentChain() = %v", got)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify() error = %v, want %v", err, tt.want)
			}
			if !errors.Is(err, credverify.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

type revoked map[string]bool

func (r revoked) Revoked(jti string) bool { return r[jti] }

type introspector struct {
	active bool
	err    error
}

func (i introspector) Active(context.Context, string) (bool, error) { return i.active, i.err }

func TestRevocationAndOnline(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	tok := es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims())
	tests := []struct {
		name   string
		rev    revoked
		intro  credverify.Introspector
		online bool
		want   error
	}{
		{name: "not revoked", rev: revoked{}},
		{name: "revoked by event", rev: revoked{"cred-1": true}, want: credverify.ErrRevoked},
		{name: "online active", rev: revoked{}, intro: introspector{active: true}, online: true},
		{name: "online inactive", rev: revoked{}, intro: introspector{active: false}, online: true, want: credverify.ErrRevoked},
		{name: "online unavailable", rev: revoked{}, intro: introspector{err: errors.New("down")}, online: true, want: credverify.ErrIntrospectionUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: es.keys(t),
				Clock: func() time.Time { return now }, Revocations: tt.rev, Introspector: tt.intro})
			if err != nil {
				t.Fatal(err)
			}
			verify := v.Verify
			if tt.online {
				verify = v.VerifyOnline
			}
			_, err = verify(context.Background(), tok)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewRejectsLargeLeeway(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	if _, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: es.keys(t), Leeway: time.Hour}); err == nil {
		t.Error("New accepted a one-hour leeway")
	}
}

func FuzzParse(f *testing.F) {
	es := newSigner(f, jose.ES256)
	keys := es.keys(f)
	f.Add(es.sign(f, "at+jwt", es.jwk.KeyID, goodClaims()))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := credverify.Parse(context.Background(), token, keys)
		if err == nil && (c.ID == "" || c.Task.ID == "") {
			t.Fatalf("Parse accepted a token without jti or task: %q", token)
		}
		if err != nil && c != nil {
			t.Fatal("Parse returned claims with an error")
		}
	})
}
