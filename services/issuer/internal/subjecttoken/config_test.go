package subjecttoken_test

import (
	"testing"
	"time"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

func TestUnsafeConfigurationIsRefused(t *testing.T) {
	t.Parallel()
	good := func() subjecttoken.Provider {
		return subjecttoken.Provider{Issuer: "https://login.example.com", Audiences: []string{"jitid"}}
	}
	for _, tc := range []struct {
		name string
		edit func(*subjecttoken.Config)
	}{
		{"no providers", func(c *subjecttoken.Config) { c.Providers = nil }},
		{"plain http to another host", func(c *subjecttoken.Config) { c.Providers[0].Issuer = "http://login.example.com" }},
		{"http to a name that only starts like loopback", func(c *subjecttoken.Config) { c.Providers[0].Issuer = "http://127.attacker.example" }},
		{"no audience", func(c *subjecttoken.Config) { c.Providers[0].Audiences = nil }},
		{"HMAC algorithm", func(c *subjecttoken.Config) { c.Providers[0].Algorithms = []string{"HS256"} }},
		{"alg none", func(c *subjecttoken.Config) { c.Providers[0].Algorithms = []string{"none"} }},
		{"leeway beyond the bound", func(c *subjecttoken.Config) { c.Leeway = subjecttoken.MaxLeeway + time.Second }},
		{"unknown token type", func(c *subjecttoken.Config) {
			c.Providers[0].TokenTypes = []subjecttoken.TokenType{"urn:ietf:params:oauth:token-type:saml2"}
		}},
		{"two providers with one id prefix", func(c *subjecttoken.Config) {
			second := good()
			second.Issuer = "https://other.example.com"
			c.Providers = append(c.Providers, second)
		}},
		{"the same issuer twice", func(c *subjecttoken.Config) {
			second := good()
			second.Mapping.IDPrefix = "other:"
			c.Providers = append(c.Providers, second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := subjecttoken.Config{Providers: []subjecttoken.Provider{good()}}
			tc.edit(&cfg)
			if _, err := subjecttoken.New(cfg); err == nil {
				t.Fatal("New accepted the configuration")
			}
		})
	}
	if _, err := subjecttoken.New(subjecttoken.Config{Providers: []subjecttoken.Provider{good()}}); err != nil {
		t.Fatalf("New refused a sound configuration: %v", err)
	}
}
