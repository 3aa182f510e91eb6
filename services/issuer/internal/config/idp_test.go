package config_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/jitid/jitid/services/issuer/internal/config"
	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// idpConfig is the -idp-config document of docs/configuration.md.
const idpConfig = `{"providers":[{"issuer":"http://127.0.0.1:9400","audiences":["jitid"],"algorithms":["RS256"],
 "token_types":["urn:ietf:params:oauth:token-type:id_token","urn:ietf:params:oauth:token-type:access_token","urn:ietf:params:oauth:token-type:jwt"],
 "max_age":"12h",
 "mapping":{"id_claim":"sub","id_prefix":"user:","entitlements_claim":"groups","entitlements":{"finance":["payments:transfer"]},
  "attributes":{"age_verified":"age_verified"},"mfa_methods":["otp"],"mfa_acrs":[],"mfa_attribute":"mfa","zoneinfo_claim":"zoneinfo"}}],
 "leeway":"30s","max_age":"12h"}`

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "idp.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIDPConfig(t *testing.T) {
	t.Parallel()
	got, err := config.Load([]string{"-idp-config", writeFile(t, idpConfig)}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := &subjecttoken.Config{
		Providers: []subjecttoken.Provider{{
			Issuer:     "http://127.0.0.1:9400",
			Audiences:  []string{"jitid"},
			Algorithms: []string{"RS256"},
			TokenTypes: []subjecttoken.TokenType{subjecttoken.TypeIDToken, subjecttoken.TypeAccessToken, subjecttoken.TypeJWT},
			MaxAge:     12 * time.Hour,
			Mapping: subjecttoken.Mapping{
				IDClaim: "sub", IDPrefix: "user:", EntitlementsClaim: "groups",
				Entitlements: map[string][]string{"finance": {"payments:transfer"}},
				Attributes:   map[string]string{"age_verified": "age_verified"},
				MFAMethods:   []string{"otp"}, MFAACRs: []string{}, MFAAttribute: "mfa", ZoneinfoClaim: "zoneinfo",
			},
		}},
		Leeway: 30 * time.Second,
		MaxAge: 12 * time.Hour,
	}
	if diff := cmp.Diff(want, got.SubjectTokens, cmpopts.IgnoreUnexported(subjecttoken.Config{})); diff != "" {
		t.Errorf("SubjectTokens (-want +got):\n%s", diff)
	}

	// Without the flag no provider is trusted.
	none, err := config.Load(nil, env(nil), io.Discard)
	if err != nil || none.SubjectTokens != nil {
		t.Errorf("Load() without -idp-config = %v, %v; want no providers", none.SubjectTokens, err)
	}
}

// Every problem of the file is reported at once, each naming where it is:
// unknown keys at any depth (a typo must not silently drop a check), values
// of the wrong type, and settings the verifier refuses.
func TestIDPConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{"unknown keys and bad values", `{"providers":[{"issuer":"http://127.0.0.1:9400","audiences":["jitid"],"audience":"x",
			"max_age":12,"mapping":{"id_prefix":"user:","entitlement_claim":"groups","attributes":{"a":1}}}],
			"leway":"30s","max_age":"twelve hours"}`,
			[]string{"providers[0].audience: unknown key", "providers[0].max_age: want a duration",
				"providers[0].mapping.entitlement_claim: unknown key", `providers[0].mapping.attributes["a"]: want a string`,
				"leway: unknown key", "max_age: time: invalid duration"}},
		{"settings the verifier refuses", `{"providers":[{"issuer":"http://login.example.com","audiences":[],
			"algorithms":["HS256"],"token_types":["saml"]}],"leeway":"1h"}`,
			[]string{"leeway", "https", "audiences", `algorithm "HS256"`, `token type "saml"`}},
		{"no providers", `{}`, []string{"no trusted providers"}},
		{"not JSON", `{"providers":`, []string{"not JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load([]string{"-idp-config", writeFile(t, tt.content)}, env(nil), io.Discard)
			if !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("Load() = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not report %q:\n%v", w, err)
				}
			}
		})
	}

	if _, err := config.Load([]string{"-idp-config", filepath.Join(t.TempDir(), "missing.json")}, env(nil), io.Discard); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("Load() with a missing file = %v, want ErrInvalid", err)
	}
}
