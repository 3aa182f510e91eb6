package credverify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Errors of Verify. Each wraps ErrInvalid except ErrKeysUnavailable and
// ErrIntrospectionUnavailable, which mean the answer is unknown, not no.
var (
	// ErrInvalid is the root of every reason a token is refused.
	ErrInvalid = errors.New("credverify: credential refused")
	// ErrMalformed means the token is not a compact JWS (or is truncated),
	// or its header or claims repeat a member name.
	ErrMalformed = fmt.Errorf("%w: malformed token", ErrInvalid)
	// ErrTooLarge means the token exceeds MaxTokenBytes.
	ErrTooLarge = fmt.Errorf("%w: token too large", ErrInvalid)
	// ErrAlgorithm means an "alg" outside ES256 and EdDSA (none and HMAC
	// never verify), or one the key named by "kid" is not for.
	ErrAlgorithm = fmt.Errorf("%w: signature algorithm not allowed", ErrInvalid)
	// ErrHeader means a header parameter no jitid credential has: "crit"
	// (no extension is understood, so none may be critical) or "b64".
	ErrHeader = fmt.Errorf("%w: header parameter not allowed", ErrInvalid)
	// ErrTokenType means a "typ" other than at+jwt.
	ErrTokenType = fmt.Errorf("%w: not an access token (typ)", ErrInvalid)
	// ErrUnknownKey means no published signing key has the token's "kid".
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
	// ErrRevoked means the credential was revoked (or its task completed),
	// or online introspection found it inactive.
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

// maxHeaderMembers bounds the members of a JOSE header: a jitid header has
// four ("alg", "kid", "typ", sometimes "jwk" in a DPoP proof).
const maxHeaderMembers = 16

// MaxLeeway bounds the clock skew a Verifier accepts.
const MaxLeeway = 2 * time.Minute

// DefaultLeeway is the clock skew a Verifier accepts when Options.Leeway is zero.
const DefaultLeeway = 30 * time.Second

// Keys finds a public key by its id.
type Keys interface {
	Key(ctx context.Context, kid string) (*jose.JSONWebKey, error)
}

// RevocationChecker says whether a credential id was revoked.
type RevocationChecker interface {
	Revoked(jti string) bool
}

// Presentation is what a caller presented: the token and, for a credential
// bound to a key (cnf.jkt), the DPoP proof with the HTTP method and URI
// (scheme, host and path, no query) it was made for.
type Presentation struct {
	Token  string
	Proof  string
	Method string
	URI    string
}

// Introspector asks the issuer whether a presented credential is active
// now (online). An error means the issuer could not answer.
type Introspector interface {
	Introspect(ctx context.Context, p Presentation) (active bool, err error)
}

// IntrospectorFunc adapts a function to Introspector.
type IntrospectorFunc func(ctx context.Context, p Presentation) (bool, error)

// Introspect calls f.
func (f IntrospectorFunc) Introspect(ctx context.Context, p Presentation) (bool, error) {
	return f(ctx, p)
}

// Options configure a Verifier.
type Options struct {
	// Issuer is the expected "iss".
	Issuer string
	// Audience is this API's name; "aud" must contain it.
	Audience string
	// Keys are the issuer's public keys: RemoteKeys, StaticKeys, or
	// issuergrpc.NewKeys.
	Keys Keys
	// Leeway is the accepted clock skew (DefaultLeeway when zero, at most
	// MaxLeeway).
	Leeway time.Duration
	// Clock is time.Now when nil.
	Clock func() time.Time
	// Revocations, when set, refuses credentials revoked since they were
	// issued (natsrevocation.List).
	Revocations RevocationChecker
	// Introspector, when set, is asked by online checks
	// (issuergrpc.NewIntrospector).
	Introspector Introspector
}

// Check is what one operation requires of a presented credential.
type Check struct {
	// Scopes must all be granted.
	Scopes []string
	// Online asks the Introspector too, for sensitive operations: a
	// credential revoked a moment ago, or past its max_uses, is refused
	// even before its revocation event arrives.
	Online bool
}

// Verifier checks jitid credentials offline, and online on request. It is
// safe for concurrent use.
type Verifier struct{ o Options }

// New returns a Verifier. Issuer, Audience and Keys are required.
func New(o Options) (*Verifier, error) {
	if o.Issuer == "" || o.Audience == "" || o.Keys == nil {
		return nil, errors.New("credverify: Issuer, Audience and Keys are required")
	}
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	if o.Leeway < 0 || o.Leeway > MaxLeeway {
		return nil, fmt.Errorf("credverify: leeway %v outside 0..%v", o.Leeway, MaxLeeway)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Verifier{o: o}, nil
}

// Verify checks token offline and that it grants every scope in scopes. A
// credential bound to a key (cnf) is refused with ErrProof: it is only
// valid with its DPoP proof, which VerifyPresentation checks.
func (v *Verifier) Verify(ctx context.Context, token string, scopes ...string) (*Claims, error) {
	return v.VerifyPresentation(ctx, Presentation{Token: token}, Check{Scopes: scopes})
}

// VerifyOnline is Verify followed by a call to the issuer, for sensitive
// operations: a credential revoked a moment ago, or past its max_uses, is
// refused even when no revocation event has arrived yet.
func (v *Verifier) VerifyOnline(ctx context.Context, token string, scopes ...string) (*Claims, error) {
	return v.VerifyPresentation(ctx, Presentation{Token: token}, Check{Scopes: scopes, Online: true})
}

// VerifyPresentation checks a presented credential: form, signature,
// issuer, audience, validity window, the revocation list, scopes, the
// DPoP proof of a key-bound credential, and, when chk.Online, the issuer's
// introspection (last, since it is the only step that leaves the process).
func (v *Verifier) VerifyPresentation(ctx context.Context, p Presentation, chk Check) (*Claims, error) {
	c, err := Parse(ctx, p.Token, v.o.Keys)
	if err != nil {
		return nil, err
	}
	if err := v.check(c); err != nil {
		return nil, err
	}
	if !c.HasScopes(chk.Scopes...) {
		return nil, ErrInsufficientScope
	}
	if err := CheckProof(c, p.Proof, p.Token, p.Method, p.URI, v.o.Clock(), ProofWindow); err != nil {
		return nil, err
	}
	if !chk.Online {
		return c, nil
	}
	if v.o.Introspector == nil {
		return nil, fmt.Errorf("%w: no introspector configured", ErrIntrospectionUnavailable)
	}
	active, err := v.o.Introspector.Introspect(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIntrospectionUnavailable, err)
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
//
// Only the compact serialization is read (the JSON serialization has no
// place in an Authorization header, and its unprotected headers none in a
// credential); a header or claim set that names a member twice is
// malformed, so that no two JSON parsers can read a credential differently.
func Parse(ctx context.Context, token string, keys Keys) (*Claims, error) {
	if len(token) > MaxTokenBytes {
		return nil, ErrTooLarge
	}
	if token == "" || token[0] == '{' {
		return nil, ErrMalformed
	}
	jws, err := jose.ParseSignedCompact(token, Algorithms)
	if err != nil {
		var algErr *jose.ErrUnexpectedSignatureAlgorithm
		switch {
		case errors.As(err, &algErr):
			return nil, ErrAlgorithm
		case errors.Is(err, jose.ErrUnsupportedCriticalHeader):
			return nil, ErrHeader
		}
		return nil, ErrMalformed
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	if err := checkHeader(token); err != nil {
		return nil, err
	}
	h := jws.Signatures[0].Header
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
	pub, err := verificationKey(key, jose.SignatureAlgorithm(h.Algorithm))
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, ErrSignature
	}
	if err := noDuplicateNames(payload); err != nil {
		return nil, err
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, ErrMalformed
	}
	if c.ID == "" || c.Subject == "" || c.Task.ID == "" || c.Agent() == "" {
		return nil, fmt.Errorf("%w: jti, sub, act and task are required", ErrMissingClaim)
	}
	return &c, nil
}

// checkHeader reads the protected header of a compact JWS go-jose has
// already parsed: no member twice, few members, no "crit" or "b64".
func checkHeader(token string) error {
	seg, _, _ := strings.Cut(token, ".")
	var buf [512]byte
	var b []byte
	if n := base64.RawURLEncoding.DecodedLen(len(seg)); n <= len(buf) {
		b = buf[:n]
	} else {
		b = make([]byte, n)
	}
	n, err := base64.RawURLEncoding.Decode(b, []byte(seg))
	if err != nil {
		return ErrMalformed
	}
	return headerNames(b[:n])
}

// verificationKey returns the public key of k for alg, refusing a key that
// is not a signing key for that algorithm (a JWKS may carry keys of several
// types, and "alg" is the attacker's choice).
func verificationKey(k *jose.JSONWebKey, alg jose.SignatureAlgorithm) (any, error) {
	if k == nil || (k.Use != "" && k.Use != "sig") {
		return nil, ErrUnknownKey
	}
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return nil, ErrAlgorithm
	}
	pub := k.Public().Key
	switch alg {
	case jose.ES256:
		if p, ok := pub.(*ecdsa.PublicKey); ok && p.Curve == elliptic.P256() {
			return p, nil
		}
	case jose.EdDSA:
		if p, ok := pub.(ed25519.PublicKey); ok && len(p) == ed25519.PublicKeySize {
			return p, nil
		}
	}
	return nil, ErrAlgorithm
}
