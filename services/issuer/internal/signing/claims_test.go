package signing_test

import (
	"testing"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

// signCases are credentials whose claims exercise the encoder: escapes,
// optional claims, chains.
func signCases() []struct {
	name        string
	edit        func(c *issuer.Credential)
	invalidUTF8 bool
} {
	return []struct {
		name        string
		edit        func(c *issuer.Credential)
		invalidUTF8 bool
	}{
		{"plain", func(*issuer.Credential) {}, false},
		{"sub-agent chain", func(c *issuer.Credential) {
			c.Chain = []issuer.ChainLink{{Agent: &identityv1.Agent{Id: "agent:planner"}}, {Agent: &identityv1.Agent{Id: "agent:root"}}}
		}, false},
		{"key-bound, use-limited", func(c *issuer.Credential) {
			c.CnfJKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
			c.MaxUses = 3
		}, false},
		{"no scopes, no purpose, no sensitivity", func(c *issuer.Credential) {
			c.Scopes = nil
			c.Task.Purpose = ""
			c.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED
		}, false},
		{"critical", func(c *issuer.Credential) { c.Task.Sensitivity = identityv1.Sensitivity_SENSITIVITY_CRITICAL }, false},
		{"JSON and HTML escapes", func(c *issuer.Credential) {
			c.Task.Purpose = "say \"hi\" \\ <b>&amp;</b>\n\r\t\x00\x1f\x7f"
		}, false},
		{"unicode", func(c *issuer.Credential) {
			c.Task.Purpose = "réserver 2 billets 🎟️ \u2028line\u2029para \ufffd"
			c.Delegator = &identityv1.Delegator{Id: "user:zoë@example.com"}
		}, false},
		{"invalid UTF-8", func(c *issuer.Credential) {
			c.Task.Purpose = "bad \xff\xfe bytes \xe2\x82 and a cut rune"
			c.Scopes = []string{"a\xc0", "b"}
		}, true},
	}
}

// TestSignedClaimsVerifyAsSigned: whatever a credential holds (escapes,
// unicode, optional claims, chains), its token verifies, here and in
// credverify, to the claim set Claims gives; invalid UTF-8 is replaced,
// not refused.
func TestSignedClaimsVerifyAsSigned(t *testing.T) {
	t.Parallel()
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA} {
		ks := newKeySet(t, generate(t, alg), t0)
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
				tok, err := ks.Sign(c)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ks.VerifyClaims(tok)
				if err != nil {
					t.Fatalf("VerifyClaims(Sign): %v", err)
				}
				// Invalid UTF-8 is written as U+FFFD, so only the
				// rest of those claims compare.
				if diff := cmp.Diff(signing.Claims(c), got); diff != "" && !tt.invalidUTF8 {
					t.Errorf("VerifyClaims(Sign) (-Claims +verified):\n%s", diff)
				}
				if !utf8.ValidString(got.Task.Purpose) || !utf8.ValidString(got.Scope) {
					t.Errorf("VerifyClaims(Sign) holds invalid UTF-8: %+v", got)
				}
				if c.CnfJKT != "" {
					return // credverify wants its DPoP proof: CheckProof's tests
				}
				viaVerifier, err := v.Verify(t.Context(), tok)
				if err != nil {
					t.Fatalf("credverify(Sign): %v", err)
				}
				if diff := cmp.Diff(got, viaVerifier); diff != "" {
					t.Errorf("credverify reads other claims (-VerifyClaims +credverify):\n%s", diff)
				}
			})
		}
	}
}
