package subjecttoken_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/services/issuer/internal/subjecttoken"
)

// The users of the provider in most tests.
var (
	alice = idpUser{
		ID: "alice@example.com", ClientID: "alice", ClientSecret: "alice-secret",
		Audience: []string{"jitid"}, Groups: []string{"finance", "staff"},
		AMR: []string{"pwd", "otp"}, ACR: "urn:example:loa:2", AuthAge: "2m",
		Zoneinfo: "Europe/Paris", Claims: map[string]any{"age_verified": true, "department": "treasury"},
	}
	// bob has no age_verified claim, one factor and no time zone.
	bob = idpUser{
		ID: "bob@example.com", ClientID: "bob", ClientSecret: "bob-secret",
		Audience: []string{"jitid"}, Groups: []string{"staff"}, AMR: []string{"pwd"},
	}
	// mallory's tokens are for another relying party.
	mallory = idpUser{
		ID: "mallory@example.com", ClientID: "mallory", ClientSecret: "mallory-secret",
		Audience: []string{"payroll"}, Groups: []string{"staff"},
	}
	// carol's provider says she authenticated ten minutes from now.
	carol = idpUser{
		ID: "carol@example.com", ClientID: "carol", ClientSecret: "carol-secret",
		Audience: []string{"jitid"}, Groups: []string{"staff"}, AuthAge: "-10m",
	}
	// dave authenticated 13 hours ago, beyond the default maximum age.
	dave = idpUser{
		ID: "dave@example.com", ClientID: "dave", ClientSecret: "dave-secret",
		Audience: []string{"jitid"}, Groups: []string{"staff"}, AuthAge: "13h",
	}
	// erin's token carries no groups claim.
	erin = idpUser{
		ID: "erin@example.com", ClientID: "erin", ClientSecret: "erin-secret",
		Audience: []string{"jitid"},
	}
	// frank's zoneinfo is no IANA zone.
	frank = idpUser{
		ID: "frank@example.com", ClientID: "frank", ClientSecret: "frank-secret",
		Audience: []string{"jitid"}, Groups: []string{"staff"},
		Claims: map[string]any{"zoneinfo": "Mars/Olympus_Mons"},
	}
	allUsers = []idpUser{alice, bob, mallory, carol, dave, erin, frank}
)

// provider is the trusted-provider configuration of the tests.
func provider(issuer string) subjecttoken.Provider {
	return subjecttoken.Provider{
		Issuer:    issuer,
		Audiences: []string{"jitid"},
		Mapping: subjecttoken.Mapping{
			IDPrefix:          "user:",
			EntitlementsClaim: "groups",
			Entitlements: map[string][]string{
				"finance": {"payments:transfer", "ledger:read"},
				"staff":   {"ledger:read", "tickets:write"},
			},
			Attributes:   map[string]string{"age_verified": "age_verified", "department": "department"},
			MFAAttribute: "mfa",
		},
	}
}

func newVerifier(t *testing.T, cfg subjecttoken.Config) *subjecttoken.Verifier {
	t.Helper()
	v, err := subjecttoken.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func verifierFor(t *testing.T, p *idp) *subjecttoken.Verifier {
	return newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{provider(p.issuer)}})
}

func TestVerifiedTokenMapsToDelegator(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	before := time.Now().Truncate(time.Second)
	tok := p.Tokens(alice)
	after := time.Now()

	for _, tc := range []struct {
		name  string
		token string
		typ   subjecttoken.TokenType
	}{
		{"id token", tok.IDToken, subjecttoken.TypeIDToken},
		{"access token", tok.AccessToken, subjecttoken.TypeAccessToken},
		{"id token as jwt", tok.IDToken, subjecttoken.TypeJWT},
		{"access token as jwt", tok.AccessToken, subjecttoken.TypeJWT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tc.token, tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			// auth_time is two minutes before issue, which the test only
			// brackets.
			if got.AuthenticatedAt.Before(before.Add(-2*time.Minute)) || got.AuthenticatedAt.After(after.Add(-2*time.Minute)) {
				t.Errorf("AuthenticatedAt = %v, want two minutes before [%v, %v]", got.AuthenticatedAt, before, after)
			}
			if got.Expiry.Before(before) || got.Expiry.After(after.Add(5*time.Minute)) {
				t.Errorf("Expiry = %v, want five minutes after issue", got.Expiry)
			}
			want := &subjecttoken.Result{
				DelegatorID: "user:alice@example.com",
				Attributes:  map[string]string{"age_verified": "true", "department": "treasury", "mfa": "true"},
				// finance and staff, translated, without the duplicate.
				Entitlements:    []string{"ledger:read", "payments:transfer", "tickets:write"},
				TimeZone:        "Europe/Paris",
				AuthenticatedAt: got.AuthenticatedAt,
				MFA:             true,
				AMR:             []string{"pwd", "otp"},
				ACR:             "urn:example:loa:2",
				Issuer:          p.issuer,
				Subject:         "alice@example.com",
				TokenType:       tc.typ,
				Expiry:          got.Expiry,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Verify (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSingleFactorIsNotMFA(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	got, err := verifierFor(t, p).Verify(context.Background(), p.Tokens(bob).IDToken, subjecttoken.TypeIDToken)
	if err != nil {
		t.Fatal(err)
	}
	if got.MFA || got.Attributes["mfa"] != "false" {
		t.Errorf("amr [pwd]: MFA = %v, mfa attribute %q; want false, \"false\"", got.MFA, got.Attributes["mfa"])
	}
	if _, ok := got.Attributes["age_verified"]; ok {
		t.Errorf("a token without age_verified gave the attribute %q", got.Attributes["age_verified"])
	}
}

// resign returns token's claims, changed by edit, signed with key under
// header typ and kid: a token the provider never issued.
func resign(t *testing.T, token string, key any, alg jose.SignatureAlgorithm, kid string, edit func(map[string]any)) string {
	t.Helper()
	claims := claimsOf(t, token)
	if edit != nil {
		edit(claims)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: &jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func TestForgedTokensAreRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	genuine := p.Tokens(bob).IDToken
	kid := kidOf(t, genuine)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	promote := func(c map[string]any) { c["age_verified"] = true; c["groups"] = []string{"finance"} }
	// The provider's public key, fetched as any attacker can, used as an
	// HMAC secret (the RS256/HS256 confusion).
	jwks := fetchJWKS(t, p)
	pub := jwks.Key(kid)[0].Key.(*rsa.PublicKey)
	hmacSecret := pub.N.Bytes()

	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(claimsOf(t, genuine))
	unsigned := header + "." + base64.RawURLEncoding.EncodeToString(payload) + "."

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"signed by another key under the provider's key id", resign(t, genuine, other, jose.RS256, kid, promote), subjecttoken.ErrBadSignature},
		{"signed by another key under a new key id", resign(t, genuine, other, jose.RS256, "attacker", promote), subjecttoken.ErrBadSignature},
		{"claims edited after signing", editPayload(t, genuine, promote), subjecttoken.ErrBadSignature},
		{"HS256 keyed with the provider's public key", resign(t, genuine, hmacSecret, jose.HS256, kid, promote), subjecttoken.ErrBadSignature},
		{"alg none", unsigned, subjecttoken.ErrBadSignature},
		{"not a JWT", "not.a.jwt", subjecttoken.ErrMalformed},
		{"JWS JSON serialization", jsonSerialized(t, genuine), subjecttoken.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tc.token, subjecttoken.TypeIDToken)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", got, err, tc.want)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Errorf("the error holds the token: %v", err)
			}
		})
	}
}

// jsonSerialized is token in the JWS JSON serialization (RFC 7515 §7.2),
// signature intact.
func jsonSerialized(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	b, err := json.Marshal(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// editPayload swaps token's claims for edited ones and keeps the signature.
func editPayload(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	claims := claimsOf(t, token)
	edit(claims)
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func fetchJWKS(t *testing.T, p *idp) jose.JSONWebKeySet {
	t.Helper()
	resp, err := httpGet("http://" + p.addr + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(resp, &set); err != nil {
		t.Fatal(err)
	}
	return set
}

func TestImpostorProviderUsingTheTrustedIssuerNameIsRefused(t *testing.T) {
	t.Parallel()
	trusted := startIDP(t, allUsers)
	// Another provider that puts the trusted issuer in iss: its tokens
	// name the right issuer but are signed by its own key.
	impostor := startIDP(t, allUsers, "-issuer", trusted.issuer)
	v := verifierFor(t, trusted)
	forged := impostor.Tokens(alice).IDToken
	if got := claimsOf(t, forged)["iss"]; got != trusted.issuer {
		t.Fatalf("impostor token iss = %v, want %s", got, trusted.issuer)
	}
	_, err := v.Verify(context.Background(), forged, subjecttoken.TypeIDToken)
	if !errors.Is(err, subjecttoken.ErrBadSignature) {
		t.Fatalf("Verify = %v, want %v", err, subjecttoken.ErrBadSignature)
	}
}

func TestTokenFromUntrustedIssuerIsRefused(t *testing.T) {
	t.Parallel()
	trusted := startIDP(t, allUsers)
	untrusted := startIDP(t, allUsers)
	v := verifierFor(t, trusted)
	for _, typ := range []subjecttoken.TokenType{subjecttoken.TypeIDToken, subjecttoken.TypeAccessToken} {
		tok := untrusted.Tokens(alice)
		token := tok.IDToken
		if typ == subjecttoken.TypeAccessToken {
			token = tok.AccessToken
		}
		if _, err := v.Verify(context.Background(), token, typ); !errors.Is(err, subjecttoken.ErrUntrustedIssuer) {
			t.Errorf("%s: Verify = %v, want %v", typ, err, subjecttoken.ErrUntrustedIssuer)
		}
	}
}

func TestTokenForAnotherAudienceIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	tok := p.Tokens(mallory)
	for _, tc := range []struct {
		token string
		typ   subjecttoken.TokenType
	}{{tok.IDToken, subjecttoken.TypeIDToken}, {tok.AccessToken, subjecttoken.TypeAccessToken}} {
		if _, err := v.Verify(context.Background(), tc.token, tc.typ); !errors.Is(err, subjecttoken.ErrWrongAudience) {
			t.Errorf("%s for payroll: Verify = %v, want %v", tc.typ, err, subjecttoken.ErrWrongAudience)
		}
	}
}

func TestExpiredTokenIsRefusedBeyondTheLeeway(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers, "-token-lifetime", "1m")
	token := p.Tokens(alice).IDToken
	exp := time.Unix(int64(claimsOf(t, token)["exp"].(float64)), 0)
	for _, tc := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"within the leeway", exp.Add(9 * time.Second), nil},
		{"beyond the leeway", exp.Add(11 * time.Second), subjecttoken.ErrExpired},
		{"an hour late", exp.Add(time.Hour), subjecttoken.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, subjecttoken.Config{
				Providers: []subjecttoken.Provider{provider(p.issuer)},
				Leeway:    10 * time.Second,
				Clock:     func() time.Time { return tc.now },
			})
			_, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokenBeforeItsValidityIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	token := p.Tokens(bob).IDToken
	// A verifier whose clock is an hour behind the provider's.
	v := newVerifier(t, subjecttoken.Config{
		Providers: []subjecttoken.Provider{provider(p.issuer)},
		Clock:     func() time.Time { return time.Now().Add(-time.Hour) },
	})
	if _, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrNotYetValid) {
		t.Fatalf("Verify = %v, want %v", err, subjecttoken.ErrNotYetValid)
	}
}

func TestFutureAuthTimeIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	_, err := verifierFor(t, p).Verify(context.Background(), p.Tokens(carol).IDToken, subjecttoken.TypeIDToken)
	if !errors.Is(err, subjecttoken.ErrFutureAuthTime) {
		t.Fatalf("Verify = %v, want %v", err, subjecttoken.ErrFutureAuthTime)
	}
}

func TestAuthenticationOlderThanTheMaximumAgeIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	token := p.Tokens(dave).IDToken
	if _, err := verifierFor(t, p).Verify(context.Background(), token, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrTooOld) {
		t.Fatalf("default maximum age: Verify = %v, want %v", err, subjecttoken.ErrTooOld)
	}
	// A provider trusted for longer sessions accepts the same token.
	long := provider(p.issuer)
	long.MaxAge = 24 * time.Hour
	v := newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{long}})
	if _, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken); err != nil {
		t.Fatalf("maximum age 24h: Verify = %v", err)
	}
}

func TestTokenPresentedAsAnotherTypeIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	tok := p.Tokens(alice)
	if _, err := v.Verify(context.Background(), tok.AccessToken, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrTypeMismatch) {
		t.Errorf("access token as ID token: Verify = %v, want %v", err, subjecttoken.ErrTypeMismatch)
	}
	if _, err := v.Verify(context.Background(), tok.IDToken, subjecttoken.TypeAccessToken); !errors.Is(err, subjecttoken.ErrTypeMismatch) {
		t.Errorf("ID token as access token: Verify = %v, want %v", err, subjecttoken.ErrTypeMismatch)
	}
	if _, err := v.Verify(context.Background(), tok.IDToken, "urn:ietf:params:oauth:token-type:saml2"); !errors.Is(err, subjecttoken.ErrUnsupportedType) {
		t.Errorf("SAML type: Verify = %v, want %v", err, subjecttoken.ErrUnsupportedType)
	}
	// A provider trusted for ID tokens only.
	idOnly := provider(p.issuer)
	idOnly.TokenTypes = []subjecttoken.TokenType{subjecttoken.TypeIDToken}
	v = newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{idOnly}})
	if _, err := v.Verify(context.Background(), tok.AccessToken, subjecttoken.TypeAccessToken); !errors.Is(err, subjecttoken.ErrUnsupportedType) {
		t.Errorf("access token from an ID-token-only provider: Verify = %v, want %v", err, subjecttoken.ErrUnsupportedType)
	}
}

func TestAlgorithmOutsideTheAllowListIsRefused(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	es := provider(p.issuer)
	es.Algorithms = []string{"ES256"}
	v := newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{es}})
	// The provider signs RS256, which this configuration does not allow.
	if _, err := v.Verify(context.Background(), p.Tokens(alice).IDToken, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrBadSignature) {
		t.Fatalf("Verify = %v, want %v", err, subjecttoken.ErrBadSignature)
	}
}

// movableClock is the real time plus an offset a test moves forward.
type movableClock struct{ offset atomic.Int64 }

func (c *movableClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *movableClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func TestProviderKeyRotationIsFollowed(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers, "-token-lifetime", "1h")
	clock := &movableClock{}
	v := newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{provider(p.issuer)}, Clock: clock.Now})
	first := p.Tokens(alice).IDToken
	if _, err := v.Verify(context.Background(), first, subjecttoken.TypeIDToken); err != nil {
		t.Fatal(err)
	}

	// The key that signs after one rotation was published beforehand.
	p.Rotate()
	second := p.Tokens(alice).IDToken
	if kidOf(t, first) == kidOf(t, second) {
		t.Fatalf("the provider signed with key %s after rotating", kidOf(t, first))
	}
	if _, err := v.Verify(context.Background(), second, subjecttoken.TypeIDToken); err != nil {
		t.Fatalf("token signed by the pre-published key: %v", err)
	}

	// After a second rotation the signing key is one the verifier has
	// never seen: it fetches the set again (once the refetch interval since
	// its last fetch has passed), and the retired first key is gone.
	p.Rotate()
	third := p.Tokens(alice).IDToken
	clock.Advance(subjecttoken.DefaultKeyRefetchInterval)
	if _, err := v.Verify(context.Background(), third, subjecttoken.TypeIDToken); err != nil {
		t.Fatalf("token signed by a key published after the verifier's fetch: %v", err)
	}
	if _, err := v.Verify(context.Background(), second, subjecttoken.TypeIDToken); err != nil {
		t.Fatalf("token signed by the previous key, still published: %v", err)
	}
	if _, err := v.Verify(context.Background(), first, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrBadSignature) {
		t.Fatalf("token signed by a retired key: Verify = %v, want %v", err, subjecttoken.ErrBadSignature)
	}
}

func TestRetiredProviderKeyStopsVerifyingAfterTheKeySetMaxAge(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers, "-token-lifetime", "1h")
	clock := &movableClock{}
	v := newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{provider(p.issuer)}, Clock: clock.Now})
	first := p.Tokens(alice).IDToken
	if _, err := v.Verify(context.Background(), first, subjecttoken.TypeIDToken); err != nil {
		t.Fatal(err)
	}
	// Two rotations retire the first key (say, because it leaked). Every
	// token still names a key the verifier has cached, so nothing but the
	// key set's age makes it look again.
	p.Rotate()
	p.Rotate()
	clock.Advance(subjecttoken.DefaultKeySetMaxAge)
	if _, err := v.Verify(context.Background(), first, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrBadSignature) {
		t.Fatalf("token signed by a retired key, after the key set max age: Verify = %v, want %v", err, subjecttoken.ErrBadSignature)
	}
}

// countingTransport counts the requests for each path.
type countingTransport struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.counts[r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[path]
}

func TestForgedTokenFloodCostsTheProviderOneKeySetRequestPerInterval(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	now := time.Now()
	counter := &countingTransport{counts: map[string]int{}}
	v := newVerifier(t, subjecttoken.Config{
		Providers:  []subjecttoken.Provider{provider(p.issuer)},
		Clock:      func() time.Time { return now },
		HTTPClient: &http.Client{Transport: counter},
	})
	genuine := p.Tokens(alice).IDToken
	if _, err := v.Verify(context.Background(), genuine, subjecttoken.TypeIDToken); err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// Each forged token names a key id of its own, so each one sends
	// go-oidc back to the provider for the key set.
	for i := range 50 {
		forged := resign(t, genuine, other, jose.RS256, fmt.Sprintf("made-up-%d", i), nil)
		if _, err := v.Verify(context.Background(), forged, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrBadSignature) {
			t.Fatalf("forged token %d: Verify = %v, want %v", i, err, subjecttoken.ErrBadSignature)
		}
	}
	if got := counter.count("/keys"); got != 1 {
		t.Errorf("key set requests for one genuine and 50 forged tokens within the interval = %d, want 1", got)
	}
	if got := counter.count("/.well-known/openid-configuration"); got != 1 {
		t.Errorf("discovery requests = %d, want 1", got)
	}
	// The genuine token is still accepted meanwhile.
	if _, err := v.Verify(context.Background(), genuine, subjecttoken.TypeIDToken); err != nil {
		t.Fatalf("genuine token during the flood: %v", err)
	}
}

func TestUnreachableProviderIsUnavailableNotAForgery(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	token := p.Tokens(alice).IDToken
	v := verifierFor(t, p)
	p.Stop()
	if _, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken); !errors.Is(err, subjecttoken.ErrProviderUnavailable) {
		t.Fatalf("Verify = %v, want %v", err, subjecttoken.ErrProviderUnavailable)
	}
}

func TestMappingRefusesTokensItCannotMap(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	v := verifierFor(t, p)
	for _, tc := range []struct {
		name string
		user idpUser
		want error
	}{
		// Without the groups claim the delegator would hold no limit.
		{"no groups claim", erin, subjecttoken.ErrClaimMissing},
		{"zoneinfo not an IANA zone", frank, subjecttoken.ErrInvalidClaim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), p.Tokens(tc.user).IDToken, subjecttoken.TypeIDToken)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEntitlementsComeOnlyFromTheConfiguredClaim(t *testing.T) {
	t.Parallel()
	contractor := idpUser{
		ID: "gina@example.com", ClientID: "gina", ClientSecret: "gina-secret",
		Audience: []string{"jitid"}, Groups: []string{"contractors"}, Roles: []string{"reports:read"},
		// A claim named like the attribute jitid asks for is not an
		// entitlement source.
		Claims: map[string]any{"entitlements": []string{"admin:*"}},
	}
	p := startIDP(t, []idpUser{contractor})
	token := p.Tokens(contractor).IDToken
	roles := provider(p.issuer)
	roles.Mapping.EntitlementsClaim, roles.Mapping.Entitlements = "roles", nil
	for _, tc := range []struct {
		name string
		prov subjecttoken.Provider
		want []string
	}{
		// contractors is not in the translation: the delegator holds
		// nothing, which is an empty list, not an absent one.
		{"groups outside the translation", provider(p.issuer), []string{}},
		{"roles taken as they are", roles, []string{"reports:read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, subjecttoken.Config{Providers: []subjecttoken.Provider{tc.prov}})
			got, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken)
			if err != nil {
				t.Fatal(err)
			}
			if got.Entitlements == nil || !cmp.Equal(tc.want, got.Entitlements) {
				t.Errorf("Entitlements = %#v, want %#v", got.Entitlements, tc.want)
			}
		})
	}
}

func TestConcurrentFirstVerificationsShareOneDiscovery(t *testing.T) {
	t.Parallel()
	p := startIDP(t, allUsers)
	counter := &countingTransport{counts: map[string]int{}}
	v := newVerifier(t, subjecttoken.Config{
		Providers:  []subjecttoken.Provider{provider(p.issuer)},
		HTTPClient: &http.Client{Transport: counter},
	})
	token := p.Tokens(alice).IDToken
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), token, subjecttoken.TypeIDToken); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := counter.count("/.well-known/openid-configuration"); got != 1 {
		t.Errorf("discovery requests = %d, want 1", got)
	}
}
