package subjecttoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// The errors Verify returns wrap one of these; compare with errors.Is.
var (
	// ErrMalformed: the token is not a compact JWS with a JSON claims set.
	ErrMalformed = errors.New("subject token is malformed")
	// ErrUnsupportedType: the subject_token_type is not one this package
	// verifies, or the token's provider is not trusted for it.
	ErrUnsupportedType = errors.New("subject token type is not supported")
	// ErrTypeMismatch: the token is not of its declared type (an access
	// token presented as an ID token, or the reverse).
	ErrTypeMismatch = errors.New("subject token is not of the declared type")
	// ErrUntrustedIssuer: iss names no trusted provider.
	ErrUntrustedIssuer = errors.New("subject token issuer is not trusted")
	// ErrBadSignature: the token is not signed, with an allowed
	// algorithm, by a key in its provider's current JWK set.
	ErrBadSignature = errors.New("subject token signature is not valid")
	// ErrExpired: exp is past, beyond the leeway.
	ErrExpired = errors.New("subject token has expired")
	// ErrNotYetValid: nbf or iat is in the future, beyond the leeway.
	ErrNotYetValid = errors.New("subject token is not valid yet")
	// ErrWrongAudience: aud names none of the provider's audiences.
	ErrWrongAudience = errors.New("subject token is for another audience")
	// ErrFutureAuthTime: auth_time is in the future or after iat, beyond
	// the leeway.
	ErrFutureAuthTime = errors.New("subject token auth_time is in the future")
	// ErrTooOld: the delegator authenticated longer ago than the maximum age.
	ErrTooOld = errors.New("subject token authentication is too old")
	// ErrClaimMissing: a claim the verification or the mapping needs is absent.
	ErrClaimMissing = errors.New("subject token lacks a required claim")
	// ErrInvalidClaim: a claim has the wrong JSON type or an unusable value
	// (an unknown time zone, an empty id).
	ErrInvalidClaim = errors.New("subject token has an invalid claim")
	// ErrProviderUnavailable: the provider's discovery document or JWK set
	// could not be fetched, so the token could not be checked. Unlike the
	// others, this one says nothing about the token.
	ErrProviderUnavailable = errors.New("identity provider is unavailable")
)

// Result is what a verified subject token proves.
type Result struct {
	// DelegatorID is Mapping.IDPrefix + the id claim.
	DelegatorID string
	// Attributes are the mapped attributes, the MFA attribute included;
	// never nil.
	Attributes map[string]string
	// Entitlements are the mapped entitlements, sorted and without
	// duplicates; nil when the provider maps none. Empty but not nil when
	// the token's groups or roles grant nothing: the delegator then holds
	// no scope, which a caller must not pass on as an empty list where an
	// empty list means "no limit".
	Entitlements []string
	// TimeZone is the IANA zone from the zoneinfo claim, or "".
	TimeZone string
	// AuthenticatedAt is auth_time.
	AuthenticatedAt time.Time
	// MFA says whether amr or acr shows multi-factor authentication.
	MFA bool
	// AMR and ACR are the token's authentication methods and context class.
	AMR []string
	ACR string
	// Issuer is the trusted provider's issuer URL; Subject its sub claim.
	Issuer  string
	Subject string
	// TokenType is the verified token's type.
	TokenType TokenType
	// Expiry is the token's exp.
	Expiry time.Time
}

// Verifier verifies subject tokens against the trusted providers. It is
// safe for concurrent use.
type Verifier struct {
	cfg       Config
	providers map[string]*provider
}

// provider is one trusted provider and its verifier, built on first use:
// discovery at construction would keep the issuer from starting while a
// provider is down.
type provider struct {
	Provider
	client  *http.Client
	fetcher *fetcher
	// keySetMaxAge is how long a fetched key set is used before it is
	// fetched again even though every token names a cached key: go-oidc
	// keeps a key until a token names one it lacks, and a key the provider
	// has retired must stop being trusted without that.
	keySetMaxAge time.Duration

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	builtAt  time.Time
	jwksURI  string
}

// New checks cfg and returns a Verifier. It makes no request: each provider
// is discovered when its first token arrives, and again after a failure.
func New(cfg Config) (*Verifier, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("subjecttoken: %w", err)
	}
	v := &Verifier{cfg: cfg, providers: make(map[string]*provider, len(cfg.Providers))}
	for _, p := range cfg.Providers {
		f := &fetcher{
			base: cfg.HTTPClient.Transport, clock: cfg.Clock,
			interval: cfg.KeyRefetchInterval, last: map[string]*fetched{},
		}
		client := *cfg.HTTPClient
		client.Transport = f
		v.providers[p.Issuer] = &provider{Provider: p, client: &client, fetcher: f, keySetMaxAge: cfg.KeySetMaxAge}
	}
	return v, nil
}

// Verify verifies token as a subject token of type typ and maps its claims.
// Errors wrap the sentinels above and never hold the token.
func (v *Verifier) Verify(ctx context.Context, token string, typ TokenType) (*Result, error) {
	if !typ.known() {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedType, typ)
	}
	// The unverified issuer only picks the provider whose keys and rules
	// apply; go-oidc checks iss again once the signature holds.
	// RFC 7519 §7.2: a JWT is in compact form; the JSON serialization,
	// with its unprotected headers, has no place in a subject token.
	jws, err := jose.ParseSignedCompact(token, allSignatureAlgorithms)
	if err != nil {
		if alg, ok := headerAlgorithm(token); ok && !slices.Contains(allSignatureAlgorithms, jose.SignatureAlgorithm(alg)) {
			// "none" and the like: well formed, but not signed in a way
			// any provider may sign.
			return nil, fmt.Errorf("%w: algorithm %q is never allowed", ErrBadSignature, alg)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}
	p, ok := v.providers[unverified.Issuer]
	if !ok {
		return nil, ErrUntrustedIssuer
	}
	if !slices.Contains(p.TokenTypes, typ) {
		return nil, fmt.Errorf("%w: %s is not trusted for %s", ErrUnsupportedType, p.Issuer, typ)
	}
	header := jws.Signatures[0].Protected
	if !slices.Contains(p.Algorithms, header.Algorithm) {
		return nil, fmt.Errorf("%w: algorithm %q is not allowed for %s", ErrBadSignature, header.Algorithm, p.Issuer)
	}
	if err := checkHeaderType(header, typ); err != nil {
		return nil, err
	}

	verifier, err := p.verifierFor(ctx, v.cfg.Clock)
	if err != nil {
		return nil, err
	}
	failuresBefore := p.fetcher.failures.Load()
	idt, err := verifier.Verify(ctx, token)
	if err != nil {
		// Concurrent calls share the counter, so a forgery checked during
		// a provider outage may be reported as the outage: either way the
		// token is refused.
		if ctx.Err() != nil || p.fetcher.failures.Load() != failuresBefore {
			return nil, fmt.Errorf("%w: %s: %v", ErrProviderUnavailable, p.Issuer, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
		}
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}
	if err := v.checkTimes(p, claims); err != nil {
		return nil, err
	}
	aud, err := stringsClaim(claims, "aud")
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(p.Audiences, a) }) {
		return nil, ErrWrongAudience
	}
	res, err := p.Mapping.apply(claims)
	if err != nil {
		return nil, err
	}
	res.Issuer = p.Issuer
	res.TokenType = typ
	res.Expiry = idt.Expiry
	return res, nil
}

// headerAlgorithm returns the alg of a compact JWS's header, if it has one.
func headerAlgorithm(token string) (string, bool) {
	encoded, _, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Alg == "" {
		return "", false
	}
	return h.Alg, true
}

// allSignatureAlgorithms are those go-jose parses; the provider's
// allow-list is applied after parsing, so that a disallowed algorithm is
// reported as such rather than as a malformed token.
var allSignatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512,
}

// checkHeaderType keeps an access token from passing as an ID token and
// the reverse (RFC 9068 §4: resource servers must check typ "at+jwt";
// RFC 8725 §3.11: explicit typing against cross-JWT confusion).
func checkHeaderType(h jose.Header, typ TokenType) error {
	t, _ := h.ExtraHeaders[jose.HeaderType].(string)
	t = strings.TrimPrefix(strings.ToLower(t), "application/")
	switch {
	case typ == TypeAccessToken && t != "at+jwt":
		return fmt.Errorf("%w: an access token must have typ at+jwt, not %q", ErrTypeMismatch, t)
	case typ == TypeIDToken && t == "at+jwt":
		return fmt.Errorf("%w: an access token (typ at+jwt) presented as an ID token", ErrTypeMismatch)
	}
	return nil
}

func (v *Verifier) checkTimes(p *provider, claims map[string]any) error {
	now := v.cfg.Clock()
	leeway := v.cfg.Leeway
	exp, err := timeClaim(claims, "exp", true)
	if err != nil {
		return err
	}
	if now.After(exp.Add(leeway)) {
		return ErrExpired
	}
	nbf, err := timeClaim(claims, "nbf", false)
	if err != nil {
		return err
	}
	iat, err := timeClaim(claims, "iat", false)
	if err != nil {
		return err
	}
	for _, t := range []time.Time{nbf, iat} {
		if !t.IsZero() && t.After(now.Add(leeway)) {
			return ErrNotYetValid
		}
	}
	authTime, err := timeClaim(claims, "auth_time", true)
	if err != nil {
		return err
	}
	if authTime.After(now.Add(leeway)) || (!iat.IsZero() && authTime.After(iat.Add(leeway))) {
		return ErrFutureAuthTime
	}
	if now.Sub(authTime) > p.MaxAge {
		return fmt.Errorf("%w: authenticated %v ago, at most %v allowed",
			ErrTooOld, now.Sub(authTime).Truncate(time.Second), p.MaxAge)
	}
	return nil
}

// verifierFor returns the provider's verifier, discovering the provider
// the first time and after a failed discovery, and starting a new key set
// once the current one is older than keySetMaxAge.
func (p *provider) verifierFor(ctx context.Context, clock func() time.Time) (*oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := clock()
	if p.verifier != nil && now.Sub(p.builtAt) < p.keySetMaxAge && !now.Before(p.builtAt) {
		return p.verifier, nil
	}
	if p.jwksURI == "" {
		discovered, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.Issuer)
		if err != nil {
			return nil, fmt.Errorf("%w: discovery of %s: %v", ErrProviderUnavailable, p.Issuer, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := discovered.Claims(&meta); err != nil || meta.JWKSURI == "" {
			return nil, fmt.Errorf("%w: discovery of %s: no jwks_uri", ErrProviderUnavailable, p.Issuer)
		}
		p.jwksURI = meta.JWKSURI
	}
	// The key set outlives this request, so it gets a context of its own;
	// the client's timeout bounds its fetches. A new key set starts empty
	// and fetches on its first token.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.client), p.jwksURI)
	p.builtAt = now
	p.verifier = oidc.NewVerifier(p.Issuer, keys, &oidc.Config{
		SupportedSigningAlgs: p.Algorithms,
		// Audience and time checks are this package's: go-oidc takes one
		// audience and has no leeway on exp.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
		Now:               clock,
	})
	return p.verifier, nil
}
