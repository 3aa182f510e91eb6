package credverify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ErrKeysUnavailable means the JWKS could not be fetched, and no key the
// token names is known from an earlier fetch.
var ErrKeysUnavailable = errors.New("credverify: signing keys unavailable")

// maxJWKSBytes bounds a fetched JWK Set or metadata document.
const maxJWKSBytes = 1 << 20

// StaticKeys is a fixed JWK Set, e.g. read from a file. It never learns of
// a rotated key: prefer RemoteKeys (or issuergrpc.NewKeys) in a server.
type StaticKeys struct{ set jose.JSONWebKeySet }

// NewStaticKeys parses a JWK Set document.
func NewStaticKeys(jwks []byte) (*StaticKeys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("credverify: parse JWKS: %w", err)
	}
	return &StaticKeys{set: set}, nil
}

// Key returns the key with id kid.
func (s *StaticKeys) Key(_ context.Context, kid string) (*jose.JSONWebKey, error) {
	if ks := s.set.Key(kid); len(ks) > 0 {
		return &ks[0], nil
	}
	return nil, ErrUnknownKey
}

// KeySource fetches the issuer's JWK Set document and says how long it may
// be cached (zero: RemoteKeysOptions.DefaultMaxAge).
type KeySource func(ctx context.Context) (jwks []byte, maxAge time.Duration, err error)

// RemoteKeys is a cached JWK Set fetched from the issuer: over HTTP
// (NewRemoteKeys, the issuer's /.well-known/jwks.json) or any KeySource
// (NewCachedKeys; issuergrpc.NewKeys uses GetSigningKeys). It keeps the set
// for the document's max-age (clamped to MinRefresh..MaxAge) and fetches
// again when a token names a kid it does not know, at most once per
// MinRefresh, so that a flood of forged kids cannot turn into a flood of
// requests. One fetch runs at a time and callers share it; a failed fetch
// leaves the keys already known in use.
type RemoteKeys struct {
	source        KeySource
	minRefresh    time.Duration
	maxAge        time.Duration
	defaultMaxAge time.Duration
	timeout       time.Duration
	now           func() time.Time

	mu        sync.Mutex
	set       jose.JSONWebKeySet
	fetchedAt time.Time     // start of the last fetch, successful or not
	expiresAt time.Time     // of the set held
	lastErr   error         // of the last fetch
	inflight  chan struct{} // closed when the running fetch ends
}

// RemoteKeysOptions configure NewRemoteKeys and NewCachedKeys.
type RemoteKeysOptions struct {
	// Client fetches the JWKS over HTTP (a client with a 5s timeout when nil).
	Client *http.Client
	// MinRefresh is the shortest time between two fetches (10s when zero).
	MinRefresh time.Duration
	// MaxAge caps how long a set is used without asking again (1h when zero).
	MaxAge time.Duration
	// DefaultMaxAge is the cache life when the issuer gives none (5m when zero).
	DefaultMaxAge time.Duration
	// Timeout bounds one fetch (5s when zero).
	Timeout time.Duration
	// Clock is time.Now when nil.
	Clock func() time.Time
}

func (o *RemoteKeysOptions) defaults() {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.MinRefresh == 0 {
		o.MinRefresh = 10 * time.Second
	}
	if o.MaxAge == 0 {
		o.MaxAge = time.Hour
	}
	if o.DefaultMaxAge == 0 {
		o.DefaultMaxAge = 5 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
}

// NewRemoteKeys returns a RemoteKeys that fetches the JWK Set at url (the
// jwks_uri of the issuer's metadata; see Discover).
func NewRemoteKeys(url string, o RemoteKeysOptions) *RemoteKeys {
	o.defaults()
	client := o.Client
	return NewCachedKeys(func(ctx context.Context) ([]byte, time.Duration, error) {
		body, h, err := httpGet(ctx, client, url, "application/jwk-set+json, application/json")
		if err != nil {
			return nil, 0, err
		}
		return body, maxAge(h.Get("Cache-Control")), nil
	}, o)
}

// NewCachedKeys returns a RemoteKeys that fetches with source.
func NewCachedKeys(source KeySource, o RemoteKeysOptions) *RemoteKeys {
	o.defaults()
	return &RemoteKeys{source: source, minRefresh: o.MinRefresh, maxAge: o.MaxAge,
		defaultMaxAge: o.DefaultMaxAge, timeout: o.Timeout, now: o.Clock}
}

// Refresh fetches the set now, e.g. at start so that a server fails fast
// when the issuer is unreachable or misconfigured.
func (r *RemoteKeys) Refresh(ctx context.Context) error {
	r.mu.Lock()
	wait := r.startFetch()
	r.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Key returns the key with id kid, fetching the JWKS when it is stale or
// does not hold kid.
func (r *RemoteKeys) Key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	r.mu.Lock()
	now := r.now()
	k, known := lookup(&r.set, kid)
	fresh := now.Before(r.expiresAt)
	if known && fresh {
		r.mu.Unlock()
		return k, nil
	}
	// Stale, or kid unknown: fetch, unless the last fetch started less
	// than MinRefresh ago (a successful one keeps the set at least that
	// long, so then kid is simply unknown, or the issuer is down).
	var wait chan struct{}
	if r.inflight != nil || r.fetchedAt.IsZero() || now.Sub(r.fetchedAt) >= r.minRefresh {
		wait = r.startFetch()
	}
	r.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			if known {
				return k, nil
			}
			return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := lookup(&r.set, kid); ok {
		return k, nil
	}
	if known && r.lastErr != nil {
		// The issuer could not be asked: a key it published before still
		// verifies the tokens it signed.
		return k, nil
	}
	if r.lastErr != nil {
		// Unknown because the issuer could not be asked: not a verdict
		// on the token.
		return nil, r.lastErr
	}
	return nil, ErrUnknownKey
}

// startFetch starts a fetch in the background and returns the channel
// closed when it ends. r.mu is held.
func (r *RemoteKeys) startFetch() chan struct{} {
	if r.inflight != nil {
		return r.inflight
	}
	done := make(chan struct{})
	r.inflight = done
	r.fetchedAt = r.now()
	go func() {
		// Not the caller's context: other callers share this fetch, and
		// one of them going away must not fail it for the rest.
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		set, age, err := r.fetch(ctx)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.inflight = nil
		r.lastErr = err
		if err == nil {
			r.set = set
			r.expiresAt = r.now().Add(age)
		}
		close(done)
	}()
	return done
}

func (r *RemoteKeys) fetch(ctx context.Context) (jose.JSONWebKeySet, time.Duration, error) {
	var set jose.JSONWebKeySet
	body, age, err := r.source(ctx)
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return set, 0, err
		}
		return set, 0, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return set, 0, fmt.Errorf("%w: parse JWKS: %w", ErrKeysUnavailable, err)
	}
	if len(set.Keys) == 0 {
		return set, 0, fmt.Errorf("%w: the JWKS holds no key", ErrKeysUnavailable)
	}
	if age <= 0 {
		age = r.defaultMaxAge
	}
	// "max-age=0" or "no-store" must not turn every request into a fetch.
	age = min(max(age, r.minRefresh), r.maxAge)
	return set, age, nil
}

func lookup(set *jose.JSONWebKeySet, kid string) (*jose.JSONWebKey, bool) {
	for i := range set.Keys {
		if set.Keys[i].KeyID == kid {
			return &set.Keys[i], true
		}
	}
	return nil, false
}

// maxAge returns the Cache-Control max-age, zero when none is given, and
// the shortest positive duration for "max-age=0", "no-cache" and
// "no-store" (which RemoteKeys raises to MinRefresh).
func maxAge(cacheControl string) time.Duration {
	for d := range strings.SplitSeq(cacheControl, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "no-cache" || d == "no-store" {
			return time.Nanosecond
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return max(time.Duration(n)*time.Second, time.Nanosecond)
			}
		}
	}
	return 0
}

// httpGet fetches url and returns its body (at most maxJWKSBytes).
func httpGet(ctx context.Context, client *http.Client, url, accept string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: GET %s: %w", ErrKeysUnavailable, url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: GET %s: HTTP %d", ErrKeysUnavailable, url, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: GET %s: %w", ErrKeysUnavailable, url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("%w: GET %s: larger than %d bytes", ErrKeysUnavailable, url, maxJWKSBytes)
	}
	return body, res.Header, nil
}
