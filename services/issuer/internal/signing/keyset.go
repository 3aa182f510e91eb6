// Package signing holds the issuer's signing keys: it mints credentials as
// JWT access tokens (RFC 9068, "typ": "at+jwt") signed ES256 by default or
// EdDSA (Ed25519), never "none" or HMAC, verifies them offline, and
// publishes the public keys as a JWK Set with kid = the RFC 7638 SHA-256
// thumbprint of each key. Verification is pkg/credverify's, the same code
// resource servers run, so that the issuer and every API refuse the same
// tokens.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// TokenType is the "typ" header of every credential (RFC 9068).
const TokenType = credverify.TokenType

// DefaultLeeway is the clock skew Verify accepts when Options.Leeway is zero.
// It is small: the issuer checks its own tokens, and only replicas' clocks
// can differ.
const DefaultLeeway = 5 * time.Second

// Algorithms are the signature algorithms a key may use: ES256 (P-256) and
// EdDSA (Ed25519).
var Algorithms = credverify.Algorithms

// ErrUnsupportedKey means a key is neither a P-256 ECDSA key nor an Ed25519
// key (RSA and symmetric keys are refused).
var ErrUnsupportedKey = errors.New("signing: unsupported key type (want ECDSA P-256 or Ed25519)")

// Options configure a KeySet.
type Options struct {
	// Issuer is the "iss" of the tokens signed and the only one Verify accepts.
	Issuer string
	// Dir is a directory of PEM or JWK key files (see Load). Empty means a
	// generated development key.
	Dir string
	// DevAlgorithm is the algorithm of a generated development key; ES256
	// when empty.
	DevAlgorithm jose.SignatureAlgorithm
	// Leeway is the accepted clock skew (DefaultLeeway when zero, at most
	// credverify.MaxLeeway).
	Leeway time.Duration
	// Clock is time.Now when nil.
	Clock  func() time.Time
	Logger *slog.Logger
}

// KeySet signs with one private key and verifies with every published
// public key. It is safe for concurrent use.
type KeySet struct {
	issuer  string
	leeway  time.Duration
	now     func() time.Time
	signer  jose.Signer
	signKID string
	keys    map[string]*jose.JSONWebKey // public, by kid
	jwks    []byte
}

// GenerateKey returns a new private key for alg (ES256 or EdDSA).
func GenerateKey(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.ES256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	default:
		return nil, fmt.Errorf("signing: algorithm %q not allowed (ES256 or EdDSA)", alg)
	}
}

// Load returns the KeySet of opts.Dir (see ReadDir), or, when Dir is empty,
// one with a generated development key, saying so in a warning: tokens it
// signs do not verify on another replica or after a restart.
func Load(opts Options) (*KeySet, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Dir == "" {
		key, err := GenerateKey(opts.DevAlgorithm)
		if err != nil {
			return nil, err
		}
		ks, err := New(opts, key)
		if err != nil {
			return nil, err
		}
		log.Warn("no signing key directory (-key-dir): signing with a generated development key; "+
			"its tokens will not verify on other replicas or after a restart", "kid", ks.signKID)
		return ks, nil
	}
	signing, published, err := ReadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	ks, err := New(opts, signing, published...)
	if err != nil {
		return nil, err
	}
	log.Info("signing keys loaded", "dir", opts.Dir, "signing_kid", ks.signKID, "published", len(ks.keys))
	return ks, nil
}

// New returns a KeySet that signs with signing and publishes its public key
// together with published (keys kept for verification: the next key, before
// it signs, and previous ones, until their tokens have expired).
func New(opts Options, signing crypto.Signer, published ...crypto.PublicKey) (*KeySet, error) {
	if opts.Issuer == "" {
		return nil, errors.New("signing: Options.Issuer is required")
	}
	if opts.Leeway == 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.Leeway < 0 || opts.Leeway > credverify.MaxLeeway {
		return nil, fmt.Errorf("signing: leeway %v outside 0..%v", opts.Leeway, credverify.MaxLeeway)
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if signing == nil {
		return nil, errors.New("signing: a signing key is required")
	}
	signJWK, err := publicJWK(signing.Public())
	if err != nil {
		return nil, err
	}
	ks := &KeySet{
		issuer:  opts.Issuer,
		leeway:  opts.Leeway,
		now:     opts.Clock,
		signKID: signJWK.KeyID,
		keys:    map[string]*jose.JSONWebKey{signJWK.KeyID: signJWK},
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*signJWK}}
	for _, pub := range published {
		jwk, err := publicJWK(pub)
		if err != nil {
			return nil, err
		}
		if _, dup := ks.keys[jwk.KeyID]; dup {
			continue
		}
		ks.keys[jwk.KeyID] = jwk
		set.Keys = append(set.Keys, *jwk)
	}
	alg := jose.SignatureAlgorithm(signJWK.Algorithm)
	ks.signer, err = jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: signing, KeyID: signJWK.KeyID, Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if ks.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("signing: encode JWKS: %w", err)
	}
	return ks, nil
}

// publicJWK returns the public JWK of key with its algorithm, use "sig" and
// kid = its RFC 7638 thumbprint.
func publicJWK(key crypto.PublicKey) (*jose.JSONWebKey, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
		}
		alg = jose.ES256
	case ed25519.PublicKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
	}
	jwk := &jose.JSONWebKey{Key: key, Algorithm: string(alg), Use: "sig"}
	kid, err := credverify.Thumbprint(jwk)
	if err != nil {
		return nil, fmt.Errorf("signing: thumbprint: %w", err)
	}
	jwk.KeyID = kid
	return jwk, nil
}

// SigningKeyID returns the kid of the key that signs.
func (k *KeySet) SigningKeyID() string { return k.signKID }

// JWKS returns the JSON Web Key Set (RFC 7517) of the public keys, the
// signing key first.
func (k *KeySet) JWKS() []byte { return k.jwks }

// Key returns the public key with id kid; it makes a KeySet a
// credverify.Keys.
func (k *KeySet) Key(_ context.Context, kid string) (*jose.JSONWebKey, error) {
	if jwk, ok := k.keys[kid]; ok {
		return jwk, nil
	}
	return nil, credverify.ErrUnknownKey
}

// Sign returns the signed token of c (see Claims).
func (k *KeySet) Sign(c *issuer.Credential) (string, error) {
	if c.Issuer != k.issuer {
		return "", fmt.Errorf("signing: credential issuer %q is not %q", c.Issuer, k.issuer)
	}
	tok, err := jwt.Signed(k.signer).Claims(Claims(c)).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return tok, nil
}

// VerifyClaims checks token offline and returns its claims: size (at most
// credverify.MaxTokenBytes, checked before parsing), algorithm (ES256 or
// EdDSA), "typ" at+jwt, a known kid, the signature, "iss", and exp/nbf/iat
// within the leeway. Errors are credverify's (all wrap credverify.ErrInvalid).
func (k *KeySet) VerifyClaims(token string) (*credverify.Claims, error) {
	c, err := credverify.Parse(context.Background(), token, k)
	if err != nil {
		return nil, err
	}
	if c.Issuer != k.issuer {
		return nil, credverify.ErrIssuer
	}
	if err := credverify.CheckTimes(c, k.now(), k.leeway); err != nil {
		return nil, err
	}
	return c, nil
}

// Verify is VerifyClaims returning the credential the token describes.
func (k *KeySet) Verify(token string) (*issuer.Credential, error) {
	c, err := k.VerifyClaims(token)
	if err != nil {
		return nil, err
	}
	return credential(c), nil
}
