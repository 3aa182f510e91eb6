// Package callerauth authenticates the caller of a gRPC call: a bearer JWT
// in the call's "authorization" metadata (a JWT-SVID or an RFC 7523 client
// assertion) verified against configured key sets, or else the verified
// mTLS peer. Authenticator is the step every jitid server puts in its
// interceptor chain.
//
// Key sets are bound to the callers they may vouch for, so that one
// caller's key never signs for another:
//
//   - a JWT-SVID (sub is a SPIFFE ID) is verified against the JWT bundle of
//     its subject's trust domain: a key file bound to "spiffe://<td>", or
//     the SPIFFE Workload API's bundles;
//   - a client assertion (sub is any other string, and iss == sub, RFC 7523
//     §3) is verified against the key file bound to that exact client id.
//
// Every token must name the service in "aud", carry "exp", live no longer
// than MaxLifetime, and be signed with an asymmetric algorithm (RS*, PS*,
// ES*, EdDSA); "none" and HMAC are refused before any key is looked up.
package callerauth

import (
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrInvalidToken is wrapped by every error Verify returns. The message
// says what is wrong (expired, wrong audience, unknown key) and never
// holds the token.
var ErrInvalidToken = errors.New("invalid bearer token")

// Defaults of a Config's zero fields.
const (
	// DefaultMaxLifetime bounds exp - iat (and exp - now): a stolen token
	// is worth at most this long. SPIRE's JWT-SVIDs live 5 minutes.
	DefaultMaxLifetime = time.Hour
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// maxLeeway keeps a configured leeway from undoing exp.
	maxLeeway = 5 * time.Minute
)

// AllowedAlgorithms are the signature algorithms a caller's token may use:
// asymmetric only, so that no key a verifier holds can sign.
var AllowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Config configures a Verifier.
type Config struct {
	// Audiences are the values of which a token's "aud" must hold at least
	// one: the service's own names.
	Audiences []string
	// Files are the JWKS files and the callers each vouches for.
	Files []KeyFile
	// Bundles, when set, supplies the JWT bundles of SPIFFE trust domains
	// (the Workload API's workloadapi.JWTSource), for JWT-SVIDs.
	Bundles jwtbundle.Source
	// MaxLifetime bounds a token's lifetime; DefaultMaxLifetime when zero.
	MaxLifetime time.Duration
	// Leeway is the clock skew allowed; DefaultLeeway when zero, at most
	// five minutes.
	Leeway time.Duration
	// PollInterval is how often the files are re-read; one second when
	// zero.
	PollInterval time.Duration
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
	// Logger receives key files that changed or failed to load; never a
	// token or a key.
	Logger *slog.Logger
}

// KeyFile is a JWKS file (RFC 7517) of public keys and the callers it
// vouches for.
type KeyFile struct {
	// Owner is "spiffe://<trust-domain>" for the JWT-SVID authorities of
	// that trust domain, or a client id for the keys of that client's
	// assertions.
	Owner string
	// Path is the JWKS file, re-read when it changes.
	Path string
}

// ParseKeyFile parses the OWNER=PATH form of a -caller-jwks entry.
func ParseKeyFile(entry string) (KeyFile, error) {
	owner, path, ok := strings.Cut(entry, "=")
	owner, path = strings.TrimSpace(owner), strings.TrimSpace(path)
	if !ok || owner == "" || path == "" {
		return KeyFile{}, fmt.Errorf("%q: want OWNER=FILE, OWNER a trust domain (spiffe://td) or a client id", entry)
	}
	if strings.HasPrefix(owner, "spiffe://") {
		id, err := spiffeid.FromString(owner)
		if err != nil {
			return KeyFile{}, fmt.Errorf("%q: %w", entry, err)
		}
		if id.Path() != "" {
			return KeyFile{}, fmt.Errorf("%q: a SPIFFE owner is a trust domain (spiffe://%s): its JWT authorities sign for all its IDs", entry, id.TrustDomain())
		}
	}
	return KeyFile{Owner: owner, Path: path}, nil
}

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	files []*keyFile
}

// NewVerifier loads every key file, failing if one does not load, and
// re-reads them every PollInterval until Close.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("callerauth: no audience")
	}
	if len(cfg.Files) == 0 && cfg.Bundles == nil {
		return nil, errors.New("callerauth: no key set")
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	cfg.Leeway = min(cfg.Leeway, maxLeeway)
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{cfg: cfg}
	for _, f := range cfg.Files {
		kf, err := openKeyFile(f, cfg.PollInterval, cfg.Logger)
		if err != nil {
			_ = v.Close() // the load error is the one to report
			return nil, err
		}
		v.files = append(v.files, kf)
	}
	return v, nil
}

// Close stops re-reading the key files.
func (v *Verifier) Close() error {
	for _, f := range v.files {
		f.close()
	}
	return nil
}

// Audiences returns the audiences a token must name one of.
func (v *Verifier) Audiences() []string { return slices.Clone(v.cfg.Audiences) }

// Verify checks token and returns its caller, the "sub" claim. Every error
// wraps ErrInvalidToken.
func (v *Verifier) Verify(token string) (string, error) {
	caller, err := v.verify(token)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return caller, nil
}

func (v *Verifier) verify(token string) (string, error) {
	tok, err := jwt.ParseSigned(token, AllowedAlgorithms)
	if err != nil {
		// go-jose names the algorithm it refused and the allowed ones; the
		// token is not echoed.
		return "", fmt.Errorf("not a signed JWT: %w", err)
	}
	if len(tok.Headers) != 1 {
		return "", errors.New("want exactly one signature")
	}
	hdr := tok.Headers[0]
	if typ, ok := hdr.ExtraHeaders[jose.HeaderType]; ok && typ != "JWT" && typ != "JOSE" {
		return "", fmt.Errorf("header typ %v: want JWT or JOSE", typ)
	}
	// The claims are read unverified only to find the keys of the caller
	// the token claims to be; nothing in them is trusted until the
	// signature checks against those keys.
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	sub := unverified.Subject
	if sub == "" {
		return "", errors.New("no sub claim")
	}
	keys, expected, err := v.keysFor(sub, hdr.KeyID)
	if err != nil {
		return "", err
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if tok.Claims(k, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "", fmt.Errorf("signature does not verify with the keys of %s", sub)
	}
	return sub, v.checkClaims(claims, expected)
}

// keysFor returns the keys that may sign for sub and the claims the token
// must then carry.
func (v *Verifier) keysFor(sub, kid string) ([]crypto.PublicKey, jwt.Expected, error) {
	if strings.HasPrefix(sub, "spiffe://") {
		id, err := spiffeid.FromString(sub)
		if err != nil {
			return nil, jwt.Expected{}, fmt.Errorf("sub is not a valid SPIFFE ID: %w", err)
		}
		// A JWT-SVID names its key (SPIFFE JWT-SVID §3); iss is optional.
		if kid == "" {
			return nil, jwt.Expected{}, errors.New("JWT-SVID header has no kid")
		}
		owner := "spiffe://" + id.TrustDomain().Name()
		var keys []crypto.PublicKey
		for _, f := range v.files {
			if f.owner == owner {
				keys = append(keys, f.keys(kid)...)
			}
		}
		if v.cfg.Bundles != nil {
			if b, err := v.cfg.Bundles.GetJWTBundleForTrustDomain(id.TrustDomain()); err == nil {
				if k, ok := b.FindJWTAuthority(kid); ok {
					keys = append(keys, k)
				}
			}
		}
		if len(keys) == 0 {
			return nil, jwt.Expected{}, fmt.Errorf("no JWT authority %q for trust domain %s", kid, id.TrustDomain())
		}
		return keys, jwt.Expected{Subject: sub}, nil
	}
	// An RFC 7523 client assertion: the client is both issuer and subject.
	var keys []crypto.PublicKey
	for _, f := range v.files {
		if f.owner == sub {
			keys = append(keys, f.keys(kid)...)
		}
	}
	if len(keys) == 0 {
		return nil, jwt.Expected{}, fmt.Errorf("no key %q for client %q", kid, sub)
	}
	return keys, jwt.Expected{Issuer: sub, Subject: sub}, nil
}

// checkClaims checks the verified claims: the expected iss and sub, an aud
// of ours, exp present and not past, nbf and iat not in the future, and a
// lifetime within MaxLifetime.
func (v *Verifier) checkClaims(c jwt.Claims, e jwt.Expected) error {
	now := v.cfg.Clock()
	leeway := v.cfg.Leeway
	if c.Expiry == nil {
		return errors.New("no exp claim")
	}
	if len(c.Audience) == 0 {
		return errors.New("no aud claim")
	}
	e.AnyAudience = v.cfg.Audiences
	e.Time = now
	if err := c.ValidateWithLeeway(e, leeway); err != nil {
		switch {
		case errors.Is(err, jwt.ErrInvalidAudience):
			return fmt.Errorf("aud %q holds none of %q", []string(c.Audience), v.cfg.Audiences)
		case errors.Is(err, jwt.ErrInvalidIssuer):
			return errors.New("a client assertion's iss must equal its sub")
		}
		return err
	}
	exp := c.Expiry.Time()
	if exp.Sub(now) > v.cfg.MaxLifetime+leeway {
		return fmt.Errorf("expires in %s: longer than the %s a caller token may live", exp.Sub(now).Round(time.Second), v.cfg.MaxLifetime)
	}
	if c.IssuedAt != nil && exp.Sub(c.IssuedAt.Time()) > v.cfg.MaxLifetime {
		return fmt.Errorf("lifetime %s is longer than %s", exp.Sub(c.IssuedAt.Time()), v.cfg.MaxLifetime)
	}
	return nil
}
