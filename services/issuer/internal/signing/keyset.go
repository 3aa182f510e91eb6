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
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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

// Defaults of Options.
const (
	// DefaultPublishDelay is how long a key that appears in the key
	// directory while the issuer runs is published before it signs. It
	// must exceed JWKSMaxAge plus the poll interval, so that every
	// verifier's cached JWKS holds the key before the first token it signs.
	DefaultPublishDelay = 5 * time.Minute
	// DefaultPollInterval is how often the key directory is read again.
	DefaultPollInterval = 10 * time.Second
)

// Options configure a KeySet.
type Options struct {
	// Issuer is the "iss" of the tokens signed and the only one Verify accepts.
	Issuer string
	// Dir is a directory of PEM or JWK key files (see ReadDir), read again by
	// Reload. Empty means a generated development key.
	Dir string
	// DevAlgorithm is the algorithm of a generated development key; ES256
	// when empty.
	DevAlgorithm jose.SignatureAlgorithm
	// Leeway is the accepted clock skew (DefaultLeeway when zero, at most
	// credverify.MaxLeeway).
	Leeway time.Duration
	// PublishDelay is how long a private key that appears in Dir after the
	// first load is published before it may sign (zero: at once).
	PublishDelay time.Duration
	// Retain is how long a key stays published after it stopped signing and
	// its file was removed: the longest life of a credential plus the leeway
	// plus the poll interval, so that every token it signed (on any replica)
	// has expired first. Zero keeps it for 24h.
	Retain time.Duration
	// Clock is time.Now when nil.
	Clock  func() time.Time
	Logger *slog.Logger
}

// KeySet signs with one private key and verifies with every published
// public key. Reload reads the key directory again, so that keys rotate
// while the issuer runs (see Reload for the rules). It is safe for
// concurrent use.
type KeySet struct {
	issuer string
	leeway time.Duration
	now    func() time.Time
	log    *slog.Logger
	dir    string
	delay  time.Duration
	retain time.Duration

	mu    sync.Mutex // serializes Reload
	known map[string]*keyEntry
	state atomic.Pointer[keyState]
}

// keyEntry is one key the set knows, by kid.
type keyEntry struct {
	jwk  *jose.JSONWebKey // public
	priv crypto.Signer    // nil for a public key file
	name string           // file name, the tie-breaker between keys
	// seen is when this process first read the key; zero for a key present
	// at the first load, taken as published long before.
	seen   time.Time
	inDir  bool
	goneAt time.Time // when it left the directory (or stopped signing, if later)
}

// activation is when the key may sign: publishDelay after it was first
// seen; at once for keys present at the first load.
func (e *keyEntry) activation(delay time.Duration) time.Time {
	if e.seen.IsZero() {
		return time.Time{}
	}
	return e.seen.Add(delay)
}

// keyState is an immutable snapshot: what signs and what is published.
type keyState struct {
	signer  jose.Signer
	signKID string
	keys    map[string]*jose.JSONWebKey // public, by kid
	jwks    []byte
	// verified remembers tokens whose signature verified under these keys
	// (see verifiedCache); a reload that removes a key starts a new one,
	// so that the key's tokens leave with it.
	verified *verifiedCache
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

// Load returns the KeySet of opts.Dir (see ReadDir and Reload), or, when
// Dir is empty, one with a generated development key, saying so in a
// warning: tokens it signs do not verify on another replica or after a
// restart.
func Load(opts Options) (*KeySet, error) {
	if opts.Dir == "" {
		key, err := GenerateKey(opts.DevAlgorithm)
		if err != nil {
			return nil, err
		}
		ks, err := New(opts, key)
		if err != nil {
			return nil, err
		}
		ks.log.Warn("no signing key directory (-key-dir): signing with a generated development key; "+
			"its tokens will not verify on other replicas or after a restart", "kid", ks.SigningKeyID())
		return ks, nil
	}
	ks, err := newKeySet(opts)
	if err != nil {
		return nil, err
	}
	if err := ks.Reload(); err != nil {
		return nil, err
	}
	st := ks.state.Load()
	ks.log.Info("signing keys loaded", "dir", opts.Dir, "signing_kid", st.signKID, "published", len(st.keys))
	return ks, nil
}

func newKeySet(opts Options) (*KeySet, error) {
	if opts.Issuer == "" {
		return nil, errors.New("signing: Options.Issuer is required")
	}
	if opts.Leeway == 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.Leeway < 0 || opts.Leeway > credverify.MaxLeeway {
		return nil, fmt.Errorf("signing: leeway %v outside 0..%v", opts.Leeway, credverify.MaxLeeway)
	}
	if opts.PublishDelay < 0 || opts.Retain < 0 {
		return nil, errors.New("signing: PublishDelay and Retain must not be negative")
	}
	if opts.Retain == 0 {
		opts.Retain = 24 * time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &KeySet{
		issuer: opts.Issuer,
		leeway: opts.Leeway,
		now:    opts.Clock,
		log:    opts.Logger,
		dir:    opts.Dir,
		delay:  opts.PublishDelay,
		retain: opts.Retain,
		known:  map[string]*keyEntry{},
	}, nil
}

// New returns a KeySet that signs with signing and publishes its public key
// together with published (keys kept for verification: the next key, before
// it signs, and previous ones, until their tokens have expired). It reads
// no directory; Reload does nothing.
func New(opts Options, signing crypto.Signer, published ...crypto.PublicKey) (*KeySet, error) {
	opts.Dir = ""
	ks, err := newKeySet(opts)
	if err != nil {
		return nil, err
	}
	if signing == nil {
		return nil, errors.New("signing: a signing key is required")
	}
	files := []fileKey{{name: "1", priv: signing}}
	for _, p := range published {
		files = append(files, fileKey{name: "0", pub: p})
	}
	if err := ks.apply(files, true); err != nil {
		return nil, err
	}
	return ks, nil
}

// Reload reads the key directory again and applies these rules, so that
// every replica reading the same directory publishes the same keys and a
// rotation needs no restart:
//
//   - Every key in the directory is published (JWKS), private or public.
//   - A private key present at the first load may sign at once; one that
//     appears later only PublishDelay after this process first read it, so
//     that verifiers have fetched it before its first token.
//   - Of the private keys that may sign, the one that became eligible last
//     signs (ties: the file name that sorts last). While none may sign yet
//     (the old key's file was replaced by the new one), the current signing
//     key keeps signing.
//   - A key whose file is removed stays published for Retain after it left
//     the directory or stopped signing, whichever is later, so that the
//     tokens it signed still verify until they expire.
//
// A directory that cannot be read, or holds a bad key, changes nothing: the
// error is returned and the previous keys stay in use. It is a no-op for a
// KeySet without a directory.
func (k *KeySet) Reload() error {
	if k.dir == "" {
		return nil
	}
	files, err := readKeys(k.dir)
	if err != nil {
		return err
	}
	return k.apply(files, false)
}

// Watch calls Reload every interval until ctx ends, logging failures.
func (k *KeySet) Watch(ctx context.Context, interval time.Duration) {
	if k.dir == "" || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := k.Reload(); err != nil {
				k.log.Error("signing keys not reloaded; the previous keys stay in use", "dir", k.dir, "error", err)
			}
		}
	}
}

func (k *KeySet) apply(files []fileKey, static bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	first := k.state.Load() == nil
	present := map[string]bool{}
	for _, f := range files {
		pub := f.pub
		if f.priv != nil {
			pub = f.priv.Public()
		}
		jwk, err := publicJWK(pub)
		if err != nil {
			return err
		}
		e, ok := k.known[jwk.KeyID]
		if !ok {
			e = &keyEntry{jwk: jwk}
			if !first && !static {
				e.seen = now
				k.log.Info("signing key published", "kid", jwk.KeyID, "file", f.name, "private", f.priv != nil,
					"may_sign_at", e.activation(k.delay))
			}
			k.known[jwk.KeyID] = e
		}
		if !present[jwk.KeyID] || f.name > e.name {
			e.name = f.name
		}
		// A key seen as public and later as private (the rotation by names
		// the README describes) keeps its first publication time.
		if f.priv != nil {
			e.priv = f.priv
		}
		e.inDir, e.goneAt = true, time.Time{}
		present[jwk.KeyID] = true
	}
	prev := k.state.Load()
	for kid, e := range k.known {
		if present[kid] {
			continue
		}
		if e.inDir {
			e.inDir, e.goneAt = false, now
			k.log.Warn("signing key removed from the directory; still published until its tokens have expired",
				"kid", kid, "until", now.Add(k.retain))
		}
		if prev != nil && kid == prev.signKID {
			continue // never unpublish the key that signs
		}
		if !now.Before(e.goneAt.Add(k.retain)) {
			delete(k.known, kid)
			k.log.Info("signing key retired from the JWKS", "kid", kid)
		}
	}

	signer := k.choose(now, prev)
	if signer == nil {
		return fmt.Errorf("signing: no private key (PEM or JWK) in %s", k.dir)
	}
	if prev != nil && prev.signKID != signer.jwk.KeyID {
		if old := k.known[prev.signKID]; old != nil && !old.inDir {
			old.goneAt = now // retained from when it stopped signing
		}
		k.log.Info("signing key rotated", "kid", signer.jwk.KeyID, "previous_kid", prev.signKID)
	}
	st, err := k.build(signer)
	if err != nil {
		return err
	}
	st.verified = verifiedCacheFor(prev, st, k.leeway)
	k.state.Store(st)
	return nil
}

// verifiedCacheFor returns the verified-token cache of st: prev's when st
// publishes every key prev did (a token that verified under prev's keys
// verifies under st's; Watch reloads every poll interval, mostly changing
// nothing), else a new one.
func verifiedCacheFor(prev, st *keyState, leeway time.Duration) *verifiedCache {
	if prev == nil {
		return newVerifiedCache(leeway)
	}
	for kid := range prev.keys {
		if _, ok := st.keys[kid]; !ok {
			return newVerifiedCache(leeway)
		}
	}
	return prev.verified
}

// choose returns the entry that signs now.
func (k *KeySet) choose(now time.Time, prev *keyState) *keyEntry {
	var best, earliest *keyEntry
	for _, e := range k.known {
		if e.priv == nil || !e.inDir {
			continue
		}
		act := e.activation(k.delay)
		if earliest == nil || act.Before(earliest.activation(k.delay)) ||
			act.Equal(earliest.activation(k.delay)) && e.name > earliest.name {
			earliest = e
		}
		if act.After(now) {
			continue
		}
		if best == nil || act.After(best.activation(k.delay)) ||
			act.Equal(best.activation(k.delay)) && (e.name > best.name || e.name == best.name && e.jwk.KeyID > best.jwk.KeyID) {
			best = e
		}
	}
	if best != nil {
		return best
	}
	if prev != nil {
		if cur := k.known[prev.signKID]; cur != nil && cur.priv != nil {
			return cur
		}
	}
	if earliest != nil {
		k.log.Warn("signing with a key published less than the publish delay ago: no other private key",
			"kid", earliest.jwk.KeyID, "published_at", earliest.seen)
	}
	return earliest
}

func (k *KeySet) build(signer *keyEntry) (*keyState, error) {
	alg := jose.SignatureAlgorithm(signer.jwk.Algorithm)
	js, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: signer.priv, KeyID: signer.jwk.KeyID, Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	st := &keyState{signer: js, signKID: signer.jwk.KeyID, keys: make(map[string]*jose.JSONWebKey, len(k.known))}
	kids := make([]string, 0, len(k.known))
	for kid, e := range k.known {
		st.keys[kid] = e.jwk
		if kid != signer.jwk.KeyID {
			kids = append(kids, kid)
		}
	}
	slices.Sort(kids)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{*signer.jwk}}
	for _, kid := range kids {
		set.Keys = append(set.Keys, *st.keys[kid])
	}
	if st.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("signing: encode JWKS: %w", err)
	}
	return st, nil
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
func (k *KeySet) SigningKeyID() string { return k.state.Load().signKID }

// JWKS returns the JSON Web Key Set (RFC 7517) of the public keys, the
// signing key first.
func (k *KeySet) JWKS() []byte { return k.state.Load().jwks }

// Key returns the public key with id kid; it makes a KeySet a
// credverify.Keys.
func (k *KeySet) Key(_ context.Context, kid string) (*jose.JSONWebKey, error) {
	if jwk, ok := k.state.Load().keys[kid]; ok {
		return jwk, nil
	}
	return nil, credverify.ErrUnknownKey
}

// Sign returns the signed token of c (see Claims).
func (k *KeySet) Sign(c *issuer.Credential) (string, error) {
	if c.Issuer != k.issuer {
		return "", fmt.Errorf("signing: credential issuer %q is not %q", c.Issuer, k.issuer)
	}
	tok, err := jwt.Signed(k.state.Load().signer).Claims(Claims(c)).Serialize()
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

// Verify is VerifyClaims returning the credential the token describes. A
// token that verified before under the same keys is not verified again;
// its times are.
func (k *KeySet) Verify(token string) (*issuer.Credential, error) {
	// The state is read before verifying, so an entry is only ever put in
	// a cache no newer than the keys that verified it.
	st := k.state.Load()
	if len(token) > credverify.MaxTokenBytes {
		return nil, credverify.ErrTooLarge
	}
	// Hashed in place: Sum256 neither keeps nor writes the bytes, and a
	// []byte(token) copy was most of the bytes a cache hit allocated.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token))) //nolint:gosec // G103: read only, see above
	if t, ok := st.verified.get(sum); ok {
		if err := t.checkTimes(k.now(), k.leeway); err != nil {
			return nil, err
		}
		return t.credential(k.issuer), nil
	}
	c, err := k.VerifyClaims(token)
	if err != nil {
		return nil, err
	}
	t := newVerifiedToken(c)
	st.verified.put(sum, t, k.now())
	return t.credential(k.issuer), nil
}

// CheckProof checks the DPoP proof (RFC 9449) presented with token for
// c, a credential bound to a key (c.CnfJKT): signed by that key, for
// p.Method and p.URI, for this token, and issued within
// credverify.ProofWindow of now.
func (k *KeySet) CheckProof(token string, c *issuer.Credential, p issuer.Proof) error {
	if c.CnfJKT == "" {
		return nil
	}
	claims := &credverify.Claims{Cnf: &credverify.Confirmation{JKT: c.CnfJKT}}
	return credverify.CheckProof(claims, p.JWT, token, p.Method, p.URI, k.now(), credverify.ProofWindow)
}

// AlgorithmNames returns the names of Algorithms, for discovery metadata.
func AlgorithmNames() []string {
	names := make([]string, len(Algorithms))
	for i, a := range Algorithms {
		names[i] = string(a)
	}
	return names
}
