package subjecttoken

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// TokenType is an RFC 8693 token type identifier (subject_token_type).
type TokenType string

// The subject token types this package verifies (RFC 8693 §3).
const (
	TypeIDToken     TokenType = "urn:ietf:params:oauth:token-type:id_token"     //nolint:gosec // G101: a token type name, not a secret
	TypeAccessToken TokenType = "urn:ietf:params:oauth:token-type:access_token" //nolint:gosec // G101: a token type name, not a secret
	TypeJWT         TokenType = "urn:ietf:params:oauth:token-type:jwt"
)

// Defaults and bounds of the time checks.
const (
	// DefaultLeeway is the clock skew tolerated on exp, nbf, iat and
	// auth_time when Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds Config.Leeway: more would let expired tokens back in.
	MaxLeeway = 5 * time.Minute
	// DefaultMaxAge is how long ago a delegator may have authenticated when
	// neither Config.MaxAge nor Provider.MaxAge says otherwise.
	DefaultMaxAge = 12 * time.Hour
	// DefaultKeyRefetchInterval is the least time between two requests for
	// a provider's key set (or discovery document) when
	// Config.KeyRefetchInterval is zero.
	DefaultKeyRefetchInterval = 5 * time.Second
	// DefaultKeySetMaxAge is how long a fetched key set is trusted before it
	// is fetched again when Config.KeySetMaxAge is zero.
	DefaultKeySetMaxAge = 10 * time.Minute
	// DefaultHTTPTimeout bounds each discovery and JWK set request when
	// Config.HTTPClient is nil.
	DefaultHTTPTimeout = 10 * time.Second
)

// DefaultAlgorithms are the signature algorithms a provider may use when
// Provider.Algorithms is empty.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// DefaultMFAMethods are the amr values (RFC 8176) taken as multi-factor
// authentication when Mapping.MFAMethods is empty.
var DefaultMFAMethods = []string{"mfa", "otp", "hwk", "swk", "sms", "sc", "fpt"}

// allowedAlgorithms are the asymmetric algorithms a provider may be
// configured with. HMAC is left out on purpose: a relying party that holds
// the key could mint the tokens it verifies.
var allowedAlgorithms = []string{
	"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
}

// Config configures a Verifier.
type Config struct {
	// Providers are the trusted identity providers; at least one.
	Providers []Provider
	// Leeway is the clock skew tolerated on exp, nbf, iat and auth_time:
	// zero means DefaultLeeway; at most MaxLeeway.
	Leeway time.Duration
	// MaxAge bounds how long ago the delegator authenticated (auth_time);
	// zero means DefaultMaxAge. Provider.MaxAge overrides it.
	MaxAge time.Duration
	// KeyRefetchInterval is the least time between two requests for the
	// same provider document: a flood of tokens naming unknown keys costs
	// the provider one request per interval, not one per token. A provider
	// that signs with a new key before publishing it may see its first such
	// tokens refused for up to this long after a fetch. Zero means
	// DefaultKeyRefetchInterval.
	KeyRefetchInterval time.Duration
	// KeySetMaxAge is how long a fetched key set is used before it is
	// fetched again, so that a key the provider retired stops verifying.
	// Zero means DefaultKeySetMaxAge.
	KeySetMaxAge time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// HTTPClient fetches discovery documents and JWK sets; nil means a
	// client with DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// Provider is one trusted identity provider.
type Provider struct {
	// Issuer is the provider's issuer URL: the exact iss of its tokens and
	// the base of its discovery document.
	Issuer string
	// Audiences are the values of which a token's aud must hold at least
	// one: this jitid's identifier at the provider (for ID tokens, often
	// the client id of the platform the user signed in to).
	Audiences []string
	// Algorithms is the allow-list of signature algorithms; empty means
	// DefaultAlgorithms. HMAC and "none" cannot be configured.
	Algorithms []string
	// TokenTypes are the subject token types accepted from this provider;
	// empty means all three.
	TokenTypes []TokenType
	// MaxAge, when set, replaces Config.MaxAge for this provider.
	MaxAge time.Duration
	// Mapping turns the provider's claims into a delegator.
	Mapping Mapping
}

// Mapping says which claims hold the delegator's fields. See the package
// documentation for how each is read.
type Mapping struct {
	// IDClaim is the claim holding the delegator's id at the provider;
	// empty means "sub".
	IDClaim string
	// IDPrefix is put before the id claim's value to form the delegator id,
	// e.g. "user:". Prefixes must differ between providers.
	IDPrefix string
	// EntitlementsClaim is the claim listing the delegator's groups or
	// roles; empty means the token grants no entitlements.
	EntitlementsClaim string
	// Entitlements, when set, translates each value of the entitlements
	// claim into the scopes it grants; values it does not name grant none.
	Entitlements map[string][]string
	// Attributes maps a delegator attribute name to the claim it is read
	// from, e.g. {"age_verified": "age_verified"}.
	Attributes map[string]string
	// MFAMethods are the amr values meaning multi-factor authentication;
	// empty means DefaultMFAMethods.
	MFAMethods []string
	// MFAACRs are the acr values meaning multi-factor authentication.
	MFAACRs []string
	// MFAAttribute, when set, is the attribute that records the MFA
	// outcome as "true" or "false".
	MFAAttribute string
	// ZoneinfoClaim is the claim holding the IANA time zone; empty means
	// "zoneinfo".
	ZoneinfoClaim string
}

// validate reports every problem of c at once and fills in the defaults
// of a copy.
func (c Config) validate() (Config, error) {
	var errs []error
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway %v is outside [0, %v]", c.Leeway, MaxLeeway))
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %v is negative", c.MaxAge))
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.KeyRefetchInterval < 0 || c.KeySetMaxAge < 0 {
		errs = append(errs, fmt.Errorf("key refetch interval %v and key set max age %v must not be negative",
			c.KeyRefetchInterval, c.KeySetMaxAge))
	}
	if c.KeyRefetchInterval == 0 {
		c.KeyRefetchInterval = DefaultKeyRefetchInterval
	}
	if c.KeySetMaxAge == 0 {
		c.KeySetMaxAge = DefaultKeySetMaxAge
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if len(c.Providers) == 0 {
		errs = append(errs, errors.New("no trusted providers"))
	}
	issuers := map[string]bool{}
	prefixes := map[string]string{}
	providers := make([]Provider, len(c.Providers))
	for i, p := range c.Providers {
		p, perrs := p.validate(c.MaxAge)
		for _, err := range perrs {
			errs = append(errs, fmt.Errorf("provider %d (%s): %w", i, p.Issuer, err))
		}
		if issuers[p.Issuer] {
			errs = append(errs, fmt.Errorf("provider %d: issuer %s is listed twice", i, p.Issuer))
		}
		issuers[p.Issuer] = true
		if other, ok := prefixes[p.Mapping.IDPrefix]; ok {
			errs = append(errs, fmt.Errorf("provider %d (%s): id prefix %q is also %s's, so both could name the same delegator",
				i, p.Issuer, p.Mapping.IDPrefix, other))
		}
		prefixes[p.Mapping.IDPrefix] = p.Issuer
		providers[i] = p
	}
	c.Providers = providers
	return c, errors.Join(errs...)
}

func (p Provider) validate(maxAge time.Duration) (Provider, []error) {
	var errs []error
	u, err := url.Parse(p.Issuer)
	switch {
	case p.Issuer == "":
		errs = append(errs, errors.New("issuer is empty"))
	case err != nil:
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		// OpenID Connect Discovery requires https; plain http is kept for
		// a provider on this machine (the demo stack, tests).
		errs = append(errs, errors.New("issuer must be an https URL (http only on loopback)"))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, errors.New("issuer must have no query or fragment"))
	}
	if len(p.Audiences) == 0 || slices.Contains(p.Audiences, "") {
		errs = append(errs, errors.New("audiences must be listed and non-empty"))
	}
	if len(p.Algorithms) == 0 {
		p.Algorithms = DefaultAlgorithms
	}
	for _, a := range p.Algorithms {
		if !slices.Contains(allowedAlgorithms, a) {
			errs = append(errs, fmt.Errorf("algorithm %q is not one of %v", a, allowedAlgorithms))
		}
	}
	if len(p.TokenTypes) == 0 {
		p.TokenTypes = []TokenType{TypeIDToken, TypeAccessToken, TypeJWT}
	}
	for _, t := range p.TokenTypes {
		if !t.known() {
			errs = append(errs, fmt.Errorf("token type %q is not supported", t))
		}
	}
	if p.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max age %v is negative", p.MaxAge))
	}
	if p.MaxAge == 0 {
		p.MaxAge = maxAge
	}
	m := &p.Mapping
	if m.IDClaim == "" {
		m.IDClaim = "sub"
	}
	if m.ZoneinfoClaim == "" {
		m.ZoneinfoClaim = "zoneinfo"
	}
	if len(m.MFAMethods) == 0 {
		m.MFAMethods = DefaultMFAMethods
	}
	for name, claim := range m.Attributes {
		if name == "" || claim == "" {
			errs = append(errs, fmt.Errorf("attribute %q from claim %q: neither may be empty", name, claim))
		}
		if name == m.MFAAttribute {
			errs = append(errs, fmt.Errorf("attribute %q is also the MFA attribute", name))
		}
	}
	if m.Entitlements != nil && m.EntitlementsClaim == "" {
		errs = append(errs, errors.New("entitlements translation without an entitlements claim"))
	}
	return p, errs
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

func (t TokenType) known() bool {
	return t == TypeIDToken || t == TypeAccessToken || t == TypeJWT
}
