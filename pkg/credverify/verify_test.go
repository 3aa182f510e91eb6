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
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

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

// signRaw signs header and payload exactly as given (JSON text), for
// tokens an honest signer never makes, such as duplicated names.
func signRaw(t testing.TB, s *signer, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	var sig []byte
	switch k := s.priv.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, ss, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	}
	return input + "." + enc.EncodeToString(sig)
}

// header returns the JSON header of a credential signed by s.
func (s *signer) header() string {
	return `{"alg":"` + string(s.alg) + `","kid":"` + s.jwk.KeyID + `","typ":"at+jwt"}`
}

// claimsJSON is goodClaims as JSON text with extra members spliced in
// before the closing brace.
func claimsJSON(t testing.TB, extra string) string {
	t.Helper()
	b, err := json.Marshal(goodClaims())
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1]) + extra + "}"
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
	// A JWKS whose key under the token's kid is of another algorithm:
	// declared (alg EdDSA) and undeclared (no alg member).
	edUnderESKid, edNoAlg := *ed, *ed
	edUnderESKid.jwk.KeyID, edUnderESKid.jwk.Algorithm = es.jwk.KeyID, string(jose.EdDSA)
	edNoAlg.jwk.KeyID, edNoAlg.jwk.Algorithm = es.jwk.KeyID, ""
	encKey := *es
	encKey.jwk.Use = "enc"
	jsonSig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: es.priv},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", es.jwk.KeyID))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(goodClaims())
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jsonSig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	jsonSerialized := jws.FullSerialize()
	attacker := newSigner(t, jose.ES256)
	embedded, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: attacker.priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("at+jwt").WithHeader("kid", es.jwk.KeyID))
	if err != nil {
		t.Fatal(err)
	}
	embeddedJWS, err := embedded.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	embeddedJWK, err := embeddedJWS.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	threeDeep := mod(func(c *credverify.Claims) {
		c.Act = &credverify.Actor{Sub: "agent:grandchild", Act: &credverify.Actor{Sub: "agent:child", Act: &credverify.Actor{Sub: "agent:parent"}}}
	})
	tests := []struct {
		name   string
		keys   *signer
		token  string
		scopes []string
		want   error
		// wantChain is the agent chain of a valid token (goodClaims' when nil).
		wantChain []string
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
		{name: "typ application/at+jwt", keys: es, token: es.sign(t, "application/at+jwt", es.jwk.KeyID, goodClaims())},
		{name: "one of several audiences", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Audience = jwt.Audience{"other-api", testAudience} }))},
		{name: "expired within the leeway", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-10 * time.Second)) }))},
		{name: "expired just past the leeway", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-credverify.DefaultLeeway)) })), want: credverify.ErrExpired},
		{name: "issued in the future", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })), want: credverify.ErrNotYetValid},
		{name: "no exp", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Expiry = nil })), want: credverify.ErrMissingClaim},
		{name: "no jti", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.ID = "" })), want: credverify.ErrMissingClaim},
		{name: "no agent", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Act, c.ClientID = nil, "" })), want: credverify.ErrMissingClaim},
		{name: "nested act chain of three", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, threeDeep), wantChain: []string{"agent:grandchild", "agent:child", "agent:parent"}},
		{name: "no kid", keys: es, token: es.sign(t, "at+jwt", "", goodClaims()), want: credverify.ErrUnknownKey},
		{name: "kid names a key of another alg (declared)", keys: &edUnderESKid, token: good, want: credverify.ErrAlgorithm},
		{name: "kid names a key of another alg (undeclared)", keys: &edNoAlg, token: good, want: credverify.ErrAlgorithm},
		{name: "kid names an encryption key", keys: &encKey, token: good, want: credverify.ErrUnknownKey},
		{name: "EdDSA header over an ES256 key", keys: es, token: signRaw(t, ed, `{"alg":"EdDSA","kid":"`+es.jwk.KeyID+`","typ":"at+jwt"}`, claimsJSON(t, "")), want: credverify.ErrAlgorithm},
		{name: "attacker's key embedded as jwk header", keys: es, token: embeddedJWK, want: credverify.ErrSignature},
		{name: "crit header", keys: es, token: signRaw(t, es, `{"alg":"ES256","crit":["exp"],"exp":1,"kid":"`+es.jwk.KeyID+`","typ":"at+jwt"}`, claimsJSON(t, "")), want: credverify.ErrHeader},
		{name: "crit b64 (unencoded payload)", keys: es, token: signRaw(t, es, `{"alg":"ES256","b64":false,"crit":["b64"],"kid":"`+es.jwk.KeyID+`","typ":"at+jwt"}`, claimsJSON(t, "")), want: credverify.ErrHeader},
		{name: "JWS JSON serialization", keys: es, token: jsonSerialized, want: credverify.ErrMalformed},
		{name: "raw signing well-formed (control)", keys: es, token: signRaw(t, es, es.header(), claimsJSON(t, ""))},
		{name: "duplicated claim", keys: es, token: signRaw(t, es, es.header(), claimsJSON(t, `,"sub":"user:mallory"`)), want: credverify.ErrMalformed},
		{name: "duplicated claim, escaped name", keys: es, token: signRaw(t, es, es.header(), claimsJSON(t, `,"s\u0075b":"user:mallory"`)), want: credverify.ErrMalformed},
		{name: "duplicated scope", keys: es, token: signRaw(t, es, es.header(), claimsJSON(t, `,"scope":"admin"`)), want: credverify.ErrMalformed},
		{name: "duplicated member inside act", keys: es, token: signRaw(t, es, es.header(), `{"iss":"`+testIssuer+`","sub":"user:alice","aud":"`+testAudience+`","jti":"j","iat":`+fmt.Sprint(now.Unix())+`,"exp":`+fmt.Sprint(now.Add(time.Minute).Unix())+`,"task":{"id":"t"},"act":{"sub":"agent:a","sub":"agent:b"}}`), want: credverify.ErrMalformed},
		{name: "duplicated header member", keys: es, token: signRaw(t, es, `{"alg":"ES256","kid":"`+es.jwk.KeyID+`","typ":"at+jwt","typ":"JWT"}`, claimsJSON(t, "")), want: credverify.ErrMalformed},
		{name: "header of many members", keys: es, token: signRaw(t, es, `{"alg":"ES256","kid":"`+es.jwk.KeyID+`","typ":"at+jwt"`+strings.Repeat(`,"x":1`, 1)+manyMembers(20)+`}`, claimsJSON(t, "")), want: credverify.ErrMalformed},
		{name: "bound to a key, no proof", keys: es, token: es.sign(t, "at+jwt", es.jwk.KeyID, mod(func(c *credverify.Claims) { c.Cnf = &credverify.Confirmation{JKT: "abc"} })), want: credverify.ErrProof},
		{name: "signature bytes cut", keys: es, token: good[:len(good)-2], want: credverify.ErrInvalid},
		{name: "header only", keys: es, token: good[:strings.Index(good, ".")], want: credverify.ErrMalformed},
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
				if c.Delegator() != "user:alice" || c.Agent() != wantAgent(tt.wantChain) || c.Task.ID != "task-1" {
					t.Errorf("claims = %+v", c)
				}
				wantChain := tt.wantChain
				if wantChain == nil {
					wantChain = []string{"agent:child", "agent:parent"}
				}
				if diff := cmp.Diff(wantChain, c.AgentChain()); diff != "" {
					t.Errorf("AgentChain() (-want +got):\n%s", diff)
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

func wantAgent(chain []string) string {
	if len(chain) > 0 {
		return chain[0]
	}
	return "agent:child"
}

// manyMembers returns n distinct header members, each with a leading comma.
func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"m%d":%d`, i, i)
	}
	return b.String()
}

type revoked map[string]bool

func (r revoked) Revoked(jti string) bool { return r[jti] }

type introspector struct {
	active bool
	err    error
}

func (i introspector) Introspect(context.Context, credverify.Presentation) (bool, error) {
	return i.active, i.err
}

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
