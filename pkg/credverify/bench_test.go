package credverify_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
)

// BenchmarkVerify measures an offline verification: what every request to
// a resource server pays.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		s := newSigner(b, alg)
		claims := goodClaims()
		claims.IssuedAt, claims.NotBefore = jwtNow(), nil
		claims.Expiry = jwtIn(time.Hour)
		token := s.sign(b, "at+jwt", s.jwk.KeyID, claims)
		j := newBenchJWKS(b, s.jwk)
		for _, ks := range []struct {
			name string
			keys credverify.Keys
		}{
			{name: "StaticKeys", keys: s.keys(b)},
			{name: "RemoteKeys-cached", keys: credverify.NewRemoteKeys(j, credverify.RemoteKeysOptions{})},
		} {
			b.Run(string(alg)+"/"+ks.name, func(b *testing.B) {
				v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: ks.keys,
					Revocations: revoked{}})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				if _, err := v.Verify(ctx, token, "tickets:read"); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := v.Verify(ctx, token, "tickets:read"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkParseRefused measures the refusal of a token with a forged
// signature: what a flood of bad tokens costs.
func BenchmarkParseRefused(b *testing.B) {
	s, other := newSigner(b, jose.ES256), newSigner(b, jose.ES256)
	token := other.sign(b, "at+jwt", s.jwk.KeyID, goodClaims())
	keys := s.keys(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := credverify.Parse(ctx, token, keys); err == nil {
			b.Fatal("forged token accepted")
		}
	}
}

func jwtNow() *jwt.NumericDate { return jwt.NewNumericDate(time.Now()) }

func jwtIn(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }

func newBenchJWKS(b *testing.B, keys ...jose.JSONWebKey) string {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}
