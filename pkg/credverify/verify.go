package credverify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Errors of Verify. Each wraps ErrInvalid except ErrKeysUnavailable and
// ErrIntrospectionUnavailable, which mean the answer is unknown, not no.
var (
	// ErrInvalid is the root of every reason a token is refused.
	ErrInvalid = errors.New("credverify: credential refused")
	// ErrMalformed means the token is not a compact JWS (or is truncated).
	ErrMalformed = fmt.Errorf("%w: malformed token", ErrInvalid)
	// ErrTooLarge means the token exceeds MaxTokenBytes.
	ErrTooLarge = fmt.Errorf("%w: token too large", ErrInvalid)
	// ErrAlgorithm means an "alg" outside ES256 and EdDSA (none and HMAC never verify).
	ErrAlgorithm = fmt.Errorf("%w: signature algorithm not allowed", ErrInvalid)
	// ErrTokenType means a "typ" other than at+jwt.
	ErrTokenType = fmt.Errorf("%w: not an access token (typ)", ErrInvalid)
	// ErrUnknownKey means no published key has the token's "kid".
	ErrUnknownKey = fmt.Errorf("%w: unknown signing key", ErrInvalid)
	// ErrSignature means the signature does not verify.
	ErrSignature = fmt.Errorf("%w: bad signature", ErrInvalid)
	// ErrIssuer means "iss" is not the expected issuer.
	ErrIssuer = fmt.Errorf("%w: wrong issuer", ErrInvalid)
	// ErrAudience means "aud" does not name this API.
	ErrAudience = fmt.Errorf("%w: wrong audience", ErrInvalid)
	// ErrExpired means "exp" has passed.
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)
	// ErrNotYetValid means "nbf" or "iat" is in the future.
	ErrNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalid)
	// ErrMissingClaim means a claim every jitid credential has is absent.
	ErrMissingClaim = fmt.Errorf("%w: missing claim", ErrInvalid)
	// ErrRevoked means the credential was revoked (or its task completed).
	ErrRevoked = fmt.Errorf("%w: revoked", ErrInvalid)
	// ErrInsufficientScope means a required scope was not granted.
	ErrInsufficientScope = fmt.Errorf("%w: insufficient scope", ErrInvalid)
	// ErrProof means the key-binding (DPoP) proof is missing or wrong.
	ErrProof = fmt.Errorf("%w: missing or invalid proof of possession", ErrInvalid)
	// ErrIntrospectionUnavailable means online introspection could not answer.
	ErrIntrospectionUnavailable = errors.New("credverify: introspection unavailable")
)

// Algorithms are the only signature algorithms a jitid credential may use.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// MaxTokenBytes bounds a token before any parsing.
const MaxTokenBytes = 8 << 10

// MaxLeeway bounds the clock skew a Verifier accepts.
const MaxLeeway = 2 * time.Minute

// Keys finds a public key by its id.
type Keys interface {
	Key(ctx context.Context, kid string) (*jose.JSONWebKey, error)
}

// RevocationChecker says whether a credential id was revoked.
type RevocationChecker interface {
	Revoked(jti string) bool
}

// Introspector asks the issuer whether a token is active (online).
type Introspector interface {
	Active(ctx context.Context, token string) (bool, error)
}

// Options configure a Verifier.
type Options struct {
	// Issuer is the expected "iss".
	Issuer string
	// Audience is this API's name; "aud" must contain it.
	Audience string
	Keys     Keys
	// Leeway is the accepted clock skew (30s when zero, at most MaxLeeway).
	Leeway time.Duration
	// Clock is time.Now when nil.
	Clock func() time.Time
	// Revocations, when set, refuses credentials revoked since they were issued.
	Revocations RevocationChecker
	// Introspector, when set, is asked by VerifyOnline.
	Introspector Introspector
}

// Verifier checks jitid credentials offline, and online on request.
type Verifier struct{ o Options }

// New returns a Verifier. Issuer, Audience and Keys are required.
func New(o Options) (*Verifier, error) {
	if o.Issuer == "" || o.Audience == "" || o.Keys == nil {
		return nil, errors.New("credverify: Issuer, Audience and Keys are required")
	}
	if o.Leeway == 0 {
		o.Leeway = 30 * time.Second
	}
	if o.Leeway < 0 || o.Leeway > MaxLeeway {
		return nil, fmt.Errorf("credverify: leeway %v outside 0..%v", o.Leeway, MaxLeeway)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Verifier{o: o}, nil
}

// Verify checks token offline and that it grants every scope in scopes.
func (v *Verifier) Verify(ctx context.Context, token string, scopes ...string) (*Claims, error) {
	c, err := Parse(ctx, token, v.o.Keys)
	if err != nil {
		return nil, err
	}
	if err := v.check(c); err != nil {
		return nil, err
	}
	if !c.HasScopes(scopes...) {
		return nil, ErrInsufficientScope
	}
	return c, nil
}

// VerifyOnline is Verify followed by a call to the issuer, for sensitive
// operations: a credential revoked a moment ago, or past its max_uses, is
// refused even when no revocation event has arrived yet.
func (v *Verifier) VerifyOnline(ctx context.Context, token string, scopes ...string) (*Claims, error) {
	c, err := v.Verify(ctx, token, scopes...)
	if err != nil {
		return nil, err
	}
	if v.o.Introspector == nil {
		return nil, fmt.Errorf("%w: no introspector configured", ErrIntrospectionUnavailable)
	}
	active, err := v.o.Introspector.Active(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntrospectionUnavailable, err)
	}
	if !active {
		return nil, ErrRevoked
	}
	return c, nil
}

func (v *Verifier) check(c *Claims) error {
	if c.Issuer != v.o.Issuer {
		return ErrIssuer
	}
	if !c.Audience.Contains(v.o.Audience) {
		return ErrAudience
	}
	if err := CheckTimes(c, v.o.Clock(), v.o.Leeway); err != nil {
		return err
	}
	if v.o.Revocations != nil && v.o.Revocations.Revoked(c.ID) {
		return ErrRevoked
	}
	return nil
}

// CheckTimes checks exp, nbf and iat against now with leeway.
func CheckTimes(c *Claims, now time.Time, leeway time.Duration) error {
	if c.Expiry == nil || c.IssuedAt == nil {
		return fmt.Errorf("%w: exp and iat", ErrMissingClaim)
	}
	if !now.Before(c.Expiry.Time().Add(leeway)) {
		return ErrExpired
	}
	if c.NotBefore != nil && now.Add(leeway).Before(c.NotBefore.Time()) {
		return ErrNotYetValid
	}
	if now.Add(leeway).Before(c.IssuedAt.Time()) {
		return ErrNotYetValid
	}
	return nil
}

// Parse checks the form and signature of token and returns its claims; it
// checks no claim values beyond their presence. Both the issuer's
// introspection and Verify use it, so that both refuse the same tokens.
func Parse(ctx context.Context, token string, keys Keys) (*Claims, error) {
	if len(token) > MaxTokenBytes {
		return nil, ErrTooLarge
	}
	if token == "" {
		return nil, ErrMalformed
	}
	tok, err := jwt.ParseSigned(token, Algorithms)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &algErr) {
			return nil, ErrAlgorithm
		}
		return nil, ErrMalformed
	}
	if len(tok.Headers) != 1 {
		return nil, ErrMalformed
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != TokenType && typ != "application/"+TokenType {
		return nil, ErrTokenType
	}
	if h.KeyID == "" {
		return nil, ErrUnknownKey
	}
	key, err := keys.Key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, ErrAlgorithm
	}
	var c Claims
	if err := tok.Claims(key.Public().Key, &c); err != nil {
		return nil, ErrSignature
	}
	if c.ID == "" || c.Subject == "" || c.Task.ID == "" || c.Agent() == "" {
		return nil, fmt.Errorf("%w: jti, sub, act and task are required", ErrMissingClaim)
	}
	return &c, nil
}
