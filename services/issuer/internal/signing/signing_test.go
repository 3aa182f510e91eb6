package signing_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const testIssuer = "https://jitid.test"

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func credentialAt(now time.Time) *issuer.Credential {
	return &issuer.Credential{
		ID:        "0193c4a2-0000-7000-8000-000000000001",
		Issuer:    testIssuer,
		Audience:  "tickets-api",
		Agent:     &identityv1.Agent{Id: "agent:research-7f3a"},
		Delegator: &identityv1.Delegator{Id: "user:alice@example.com"},
		Task: &identityv1.Task{
			Id:           "task-42",
			Purpose:      "book two tickets for the 3pm show",
			Sensitivity:  identityv1.Sensitivity_SENSITIVITY_MEDIUM,
			DeadlineTime: timestamppb.New(now.Add(time.Hour)),
		},
		Scopes:    []string{"tickets:read", "tickets:hold"},
		IssuedAt:  now,
		ExpiresAt: now.Add(15 * time.Minute),
	}
}

func readKey(t *testing.T, name string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

func newKeySet(t testing.TB, key crypto.Signer, now time.Time, published ...crypto.PublicKey) *signing.KeySet {
	t.Helper()
	ks, err := signing.New(signing.Options{Issuer: testIssuer, Clock: fixedClock(now)}, key, published...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func generate(t testing.TB, alg jose.SignatureAlgorithm) crypto.Signer {
	t.Helper()
	k, err := signing.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			ks := newKeySet(t, generate(t, alg), t0)
			c := credentialAt(t0)
			token, err := ks.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ks.Verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &issuer.Credential{
				ID: c.ID, Issuer: c.Issuer, Audience: c.Audience,
				Agent: c.Agent, Delegator: c.Delegator,
				Task:   &identityv1.Task{Id: c.Task.Id, Purpose: c.Task.Purpose, Sensitivity: c.Task.Sensitivity},
				Scopes: c.Scopes, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt,
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Verify(Sign(c)) mismatch (-want +got):\n%s", diff)
			}

			// A resource server with only the JWKS verifies it too.
			keys, err := credverify.NewStaticKeys(ks.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: "tickets-api", Keys: keys, Clock: fixedClock(t0)})
			if err != nil {
				t.Fatal(err)
			}
			claims, err := v.Verify(t.Context(), token, "tickets:hold")
			if err != nil {
				t.Fatalf("credverify: %v", err)
			}
			if claims.Delegator() != "user:alice@example.com" || claims.Agent() != "agent:research-7f3a" || claims.Task.ID != "task-42" {
				t.Errorf("claims = %+v", claims)
			}
		})
	}
}

func TestKeyIDIsThumbprint(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			key := generate(t, alg)
			ks := newKeySet(t, key, t0)
			tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			want := base64.RawURLEncoding.EncodeToString(tp)

			var set jose.JSONWebKeySet
			if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
			}
			k := set.Keys[0]
			if k.KeyID != want || k.Algorithm != string(alg) || k.Use != "sig" || !k.IsPublic() {
				t.Errorf("JWKS key = kid %q alg %q use %q public %v; want kid %q alg %s use sig public",
					k.KeyID, k.Algorithm, k.Use, k.IsPublic(), want, alg)
			}
			token, err := ks.Sign(credentialAt(t0))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.ParseSigned(token, signing.Algorithms)
			if err != nil {
				t.Fatal(err)
			}
			h := tok.Headers[0]
			if h.KeyID != want || h.Algorithm != string(alg) || h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
				t.Errorf("header = kid %q alg %q typ %v; want kid %q alg %s typ at+jwt", h.KeyID, h.Algorithm, h.ExtraHeaders[jose.HeaderType], want, alg)
			}
		})
	}
}

func b64(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.ES256)
	ks := newKeySet(t, key, t0)
	good, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	var header map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &header); err != nil {
		t.Fatal(err)
	}
	kid := header["kid"].(string)

	// alg "none": a header saying so and an empty signature.
	none := b64(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1] + "."

	// HS256 keyed with the public key: the classic algorithm confusion.
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	hmacToken, err := jwt.Signed(hs).Claims(signing.Claims(credentialAt(t0))).Serialize()
	if err != nil {
		t.Fatal(err)
	}

	// Same key, but "typ": "JWT" (an ID token or anything else, not an access token).
	plain, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	wrongTyp, err := jwt.Signed(plain).Claims(signing.Claims(credentialAt(t0))).Serialize()
	if err != nil {
		t.Fatal(err)
	}

	other := newKeySet(t, generate(t, jose.ES256), t0)
	unknownKid, err := other.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, err := signing.New(signing.Options{Issuer: "https://evil.example", Clock: fixedClock(t0)}, key)
	if err != nil {
		t.Fatal(err)
	}
	evil := credentialAt(t0)
	evil.Issuer = "https://evil.example"
	wrongIss, err := otherIssuer.Sign(evil)
	if err != nil {
		t.Fatal(err)
	}

	// Payload swapped under a valid signature.
	tamperedClaims := signing.Claims(credentialAt(t0))
	tamperedClaims.Scope = "tickets:purchase"
	tampered := parts[0] + "." + b64(tamperedClaims) + "." + parts[2]

	big := credentialAt(t0)
	big.Task.Purpose = strings.Repeat("p", credverify.MaxTokenBytes)
	oversized, err := ks.Sign(big)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{name: "alg none", token: none, now: t0, want: credverify.ErrAlgorithm},
		{name: "HS256 with the public key", token: hmacToken, now: t0, want: credverify.ErrAlgorithm},
		{name: "typ not at+jwt", token: wrongTyp, now: t0, want: credverify.ErrTokenType},
		{name: "unknown kid", token: unknownKid, now: t0, want: credverify.ErrUnknownKey},
		{name: "wrong issuer", token: wrongIss, now: t0, want: credverify.ErrIssuer},
		{name: "tampered payload", token: tampered, now: t0, want: credverify.ErrSignature},
		{name: "expired", token: good, now: t0.Add(15*time.Minute + signing.DefaultLeeway), want: credverify.ErrExpired},
		{name: "not yet valid", token: good, now: t0.Add(-signing.DefaultLeeway - time.Second), want: credverify.ErrNotYetValid},
		{name: "truncated", token: good[:len(good)-20], now: t0, want: credverify.ErrInvalid},
		{name: "two parts", token: parts[0] + "." + parts[1], now: t0, want: credverify.ErrMalformed},
		{name: "oversized", token: oversized, now: t0, want: credverify.ErrTooLarge},
		{name: "empty", token: "", now: t0, want: credverify.ErrMalformed},
		{name: "garbage", token: "not.a.jwt", now: t0, want: credverify.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ks := newKeySet(t, key, tt.now)
			_, err := ks.Verify(tt.token)
			if !errors.Is(err, tt.want) || !errors.Is(err, credverify.ErrInvalid) {
				t.Errorf("Verify() error = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("within leeway", func(t *testing.T) {
		t.Parallel()
		for _, now := range []time.Time{t0.Add(-signing.DefaultLeeway + time.Second), t0.Add(15*time.Minute + signing.DefaultLeeway - time.Second)} {
			if _, err := newKeySet(t, key, now).Verify(good); err != nil {
				t.Errorf("Verify at %v: %v", now, err)
			}
		}
	})
}

func TestSignRefusesOtherIssuer(t *testing.T) {
	t.Parallel()
	ks := newKeySet(t, generate(t, jose.ES256), t0)
	c := credentialAt(t0)
	c.Issuer = "https://other.example"
	if _, err := ks.Sign(c); err == nil {
		t.Error("Sign of a credential of another issuer succeeded")
	}
}

// TestClaimsGolden pins the claim set and header of a credential: a change
// here is a change of the credential format every verifier reads.
func TestClaimsGolden(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, key string }{
		{"es256", "01-es256.pem"},
		{"ed25519", "02-ed25519.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ks := newKeySet(t, readKey(t, tt.key), t0)
			token, err := ks.Sign(credentialAt(t0))
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(token, ".")
			var doc struct {
				Header json.RawMessage `json:"header"`
				Claims json.RawMessage `json:"claims"`
			}
			for i, dst := range []*json.RawMessage{&doc.Header, &doc.Claims} {
				b, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil {
					t.Fatal(err)
				}
				*dst = b
			}
			got, err := json.MarshalIndent(doc, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", "token-"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("token header and claims differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestReadDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "keys")
	ks, err := signing.Load(signing.Options{Issuer: testIssuer, Dir: dir, Clock: fixedClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 4 {
		t.Errorf("JWKS has %d keys, want 4", len(set.Keys))
	}
	// 02-ed25519.pem is the last private key by name: it signs.
	if _, ok := set.Keys[0].Key.(ed25519.PublicKey); !ok || set.Keys[0].KeyID != ks.SigningKeyID() {
		t.Errorf("first JWKS key = %T %s, want the Ed25519 signing key %s", set.Keys[0].Key, set.Keys[0].KeyID, ks.SigningKeyID())
	}
	token, err := ks.Sign(credentialAt(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Verify(token); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestReadDirJWK(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := generate(t, jose.ES256)
	b, err := json.Marshal(jose.JSONWebKey{Key: key, Algorithm: "ES256"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "signing.jwk"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, published, err := signing.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !signer.(*ecdsa.PrivateKey).Equal(key) || len(published) != 0 {
		t.Errorf("ReadDir = %T, %d published; want the JWK's key alone", signer, len(published))
	}
}

func TestReadDirRefuses(t *testing.T) {
	t.Parallel()
	hmacJWK, err := json.Marshal(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), Algorithm: "HS256"})
	if err != nil {
		t.Fatal(err)
	}
	pub := generate(t, jose.EdDSA).Public()
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		files map[string][]byte
	}{
		{name: "empty dir"},
		{name: "HMAC secret", files: map[string][]byte{"k.jwk": hmacJWK}},
		{name: "public keys only", files: map[string][]byte{"k.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})}},
		{name: "not PEM", files: map[string][]byte{"k.pem": []byte("hello")}},
		{name: "certificate", files: map[string][]byte{"k.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, _, err := signing.ReadDir(dir); err == nil {
				t.Error("ReadDir succeeded, want an error")
			}
		})
	}
}

func TestLoadWithoutDirGeneratesDevKey(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{"", jose.EdDSA} {
		ks, err := signing.Load(signing.Options{Issuer: testIssuer, DevAlgorithm: alg, Clock: fixedClock(t0)})
		if err != nil {
			t.Fatal(err)
		}
		token, err := ks.Sign(credentialAt(t0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Verify(token); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if _, err := signing.GenerateKey(jose.HS256); err == nil {
		t.Error("GenerateKey(HS256) succeeded")
	}
}
