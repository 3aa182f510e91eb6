package signing_test

import (
	"crypto"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

// builderSigner signs as KeySet.Sign did before it encoded the claims
// itself: go-jose's JWT builder over signing.Claims.
type builderSigner struct{ s jose.Signer }

func newBuilderSigner(t testing.TB, key crypto.Signer, kid string, alg jose.SignatureAlgorithm) builderSigner {
	t.Helper()
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType(signing.TokenType),
	)
	if err != nil {
		t.Fatal(err)
	}
	return builderSigner{s}
}

func (b builderSigner) sign(t testing.TB, claims any) string {
	t.Helper()
	tok, err := jwt.Signed(b.s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// segment returns the decoded i-th segment of a compact JWS.
func segment(t testing.TB, token string, i int) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signCases are credentials whose claims exercise the encoder: escapes,
// optional claims, chains.
func signCases() []struct {
	name string
	edit func(c *issuer.Credential)
} {
	return []struct {
		name string
		edit func(c *issuer.Credential)
	}{
		{"plain", func(*issuer.Credential) {}},
		{"sub-agent chain", func(c *issuer.Credential) {
			c.Chain = []issuer.ChainLink{{Agent: &identityv1.Agent{Id: "agent:planner"}}, {Agent: &identityv1.Agent{Id: "agent:root"}}}
		}},
		{"key-bound, use-limited", func(c *issuer.Credential) {
			c.CnfJKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
			c.MaxUses = 3
		}},
		{"no scopes, no purpose, no sensitivity", func(c *issuer.Credential) {
			c.Scopes = nil
			c.Task.Purpose = ""
			c.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED
		}},
		{"critical", func(c *issuer.Credential) { c.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_CRITICAL }},
		{"JSON and HTML escapes", func(c *issuer.Credential) {
			c.Task.Purpose = "say \"hi\" \\ <b>&amp;</b>\n\r\t\x00\x1f\x7f"
		}},
		{"unicode", func(c *issuer.Credential) {
			c.Task.Purpose = "réserver 2 billets 🎟️ \u2028line\u2029para \ufffd"
			c.Delegator = &identityv1.Delegator{Id: "user:zoë@example.com"}
		}},
		{"invalid UTF-8", func(c *issuer.Credential) {
			c.Task.Purpose = "bad \xff\xfe bytes \xe2\x82 and a cut rune"
			c.Scopes = []string{"a\xc0", "b"}
		}},
	}
}

// TestSignMatchesBuilder: Sign writes the token go-jose's builder wrote
// (the same bytes under Ed25519, whose signatures are deterministic; the
// same header and claims under ES256), and its claims verify to the same
// credential, here and in credverify.
func TestSignMatchesBuilder(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		key := generate(t, alg)
		ks := newKeySet(t, key, t0)
		old := newBuilderSigner(t, key, ks.SigningKeyID(), alg)
		keys, err := credverify.NewStaticKeys(ks.JWKS())
		if err != nil {
			t.Fatal(err)
		}
		v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: "tickets-api", Keys: keys, Clock: fixedClock(t0)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range signCases() {
			t.Run(string(alg)+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				c := credentialAt(t0)
				tt.edit(c)
				got, err := ks.Sign(c)
				if err != nil {
					t.Fatal(err)
				}
				want := old.sign(t, signing.Claims(c))
				if alg == jose.EdDSA && got != want {
					t.Errorf("Sign = %s\nbuilder = %s", got, want)
				}
				for i, name := range []string{"header", "claims"} {
					if diff := cmp.Diff(segment(t, want, i), segment(t, got, i)); diff != "" {
						t.Errorf("%s differ from the builder's (-builder +Sign):\n%s", name, diff)
					}
				}

				gotCred, err := ks.Verify(got)
				if err != nil {
					t.Fatalf("Verify(Sign): %v", err)
				}
				wantCred, err := ks.Verify(want)
				if err != nil {
					t.Fatalf("Verify(builder): %v", err)
				}
				if diff := cmp.Diff(wantCred, gotCred, protocmp.Transform()); diff != "" {
					t.Errorf("Verify differs from the builder's token (-builder +Sign):\n%s", diff)
				}

				if c.CnfJKT != "" {
					return // credverify wants its DPoP proof: CheckProof's tests
				}
				gotClaims, err := v.Verify(t.Context(), got)
				if err != nil {
					t.Fatalf("credverify(Sign): %v", err)
				}
				wantClaims, err := v.Verify(t.Context(), want)
				if err != nil {
					t.Fatalf("credverify(builder): %v", err)
				}
				if diff := cmp.Diff(wantClaims, gotClaims); diff != "" {
					t.Errorf("credverify claims differ (-builder +Sign):\n%s", diff)
				}
			})
		}
	}
}

// TestAppendClaimsJSONMatchesBuilder covers claim sets Claims never makes
// (several audiences, absent times, an empty cnf): the encoder is still
// the builder's byte for byte.
func TestAppendClaimsJSONMatchesBuilder(t *testing.T) {
	t.Parallel()
	key := generate(t, jose.EdDSA)
	old := newBuilderSigner(t, key, "k", jose.EdDSA)
	date := func(s int64) *jwt.NumericDate { d := jwt.NumericDate(s); return &d }
	tests := []struct {
		name   string
		claims *credverify.Claims
	}{
		{"empty", &credverify.Claims{}},
		{"several audiences", &credverify.Claims{Claims: jwt.Claims{Audience: jwt.Audience{"a", "b<", ""}}}},
		{"empty audience list", &credverify.Claims{Claims: jwt.Claims{Audience: jwt.Audience{}}}},
		{"one empty audience", &credverify.Claims{Claims: jwt.Claims{Audience: jwt.Audience{""}}}},
		{"times only", &credverify.Claims{Claims: jwt.Claims{Expiry: date(-1), NotBefore: date(0), IssuedAt: date(1 << 40)}}},
		{"empty cnf", &credverify.Claims{Cnf: &credverify.Confirmation{}}},
		{"negative max_uses", &credverify.Claims{MaxUses: -7}},
		{"deep act", &credverify.Claims{Act: &credverify.Actor{Sub: "a", Act: &credverify.Actor{Act: &credverify.Actor{Sub: "c"}}}}},
		{"all", signing.Claims(func() *issuer.Credential {
			c := credentialAt(t0)
			c.CnfJKT, c.MaxUses = "jkt", 1
			c.Chain = []issuer.ChainLink{{Agent: &identityv1.Agent{Id: "p"}}}
			return c
		}())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := segment(t, old.sign(t, tt.claims), 1)
			if got := string(signing.AppendClaimsJSON([]byte("x"), tt.claims)); got != "x"+want {
				t.Errorf("AppendClaimsJSON = %s\nbuilder = %s", got, want)
			}
		})
	}
}

// FuzzSignMatchesBuilder: for any credential content, Sign writes the
// builder's token byte for byte (Ed25519 signs deterministically).
func FuzzSignMatchesBuilder(f *testing.F) {
	key, err := signing.GenerateKey(jose.EdDSA)
	if err != nil {
		f.Fatal(err)
	}
	ks := newKeySet(f, key, t0)
	old := newBuilderSigner(f, key, ks.SigningKeyID(), jose.EdDSA)
	f.Add("0193c4a2", "agent:a", "user:b", "task-1", "purpose", "tickets-api", "s1 s2", "", "", 0, int64(1795953600), int64(900), int32(2))
	f.Add("\x00<>&", "\u2028", "\xff", "", "\"\\", "", "", "jkt", "p1,p2", 5, int64(-1), int64(0), int32(9))
	f.Fuzz(func(t *testing.T, id, agent, delegator, task, purpose, aud, scopes, jkt, chain string,
		maxUses int, iat, ttl int64, sensitivity int32) {
		c := &issuer.Credential{
			ID: id, Issuer: testIssuer, Audience: aud,
			Agent:     &identityv1.Agent{Id: agent},
			Delegator: &identityv1.Delegator{Id: delegator},
			Task:      &identityv1.Task{Id: task, Purpose: purpose, Sensitivity: identityv1.Sensitivity(sensitivity)},
			Scopes:    strings.Fields(scopes),
			CnfJKT:    jkt,
			MaxUses:   maxUses,
		}
		if chain != "" {
			for _, a := range strings.Split(chain, ",") {
				c.Chain = append(c.Chain, issuer.ChainLink{Agent: &identityv1.Agent{Id: a}})
			}
		}
		if iat != 0 { // 0: no times, as a zero time.Time
			c.IssuedAt = time.Unix(iat, 0)
			c.ExpiresAt = c.IssuedAt.Add(time.Duration(ttl % (1 << 40)))
		}
		got, err := ks.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := old.sign(t, signing.Claims(c)); got != want {
			t.Errorf("Sign = %s\nbuilder = %s", got, want)
		}
	})
}
