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

// StaticKeys is a fixed JWK Set, e.g. read from the issuer once.
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

// RemoteKeys fetches the issuer's JWKS over HTTP (the issuer serves it at
// /.well-known/jwks.json), caches it for its Cache-Control max-age, and
// fetches again when a token names a kid it does not know, at most once per
// MinRefresh, so that a flood of forged kids cannot turn into a flood of
// requests.
type RemoteKeys struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	now        func() time.Time

	mu        sync.Mutex
	set       jose.JSONWebKeySet
	fetchedAt time.Time
	expiresAt time.Time
}

// RemoteKeysOptions configure NewRemoteKeys.
type RemoteKeysOptions struct {
	Client *http.Client
	// MinRefresh is the shortest time between two fetches (10s when zero).
	MinRefresh time.Duration
	// Clock is time.Now when nil.
	Clock func() time.Time
}

// NewRemoteKeys returns a RemoteKeys for url.
func NewRemoteKeys(url string, o RemoteKeysOptions) *RemoteKeys {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if o.MinRefresh == 0 {
		o.MinRefresh = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &RemoteKeys{url: url, client: o.Client, minRefresh: o.MinRefresh, now: o.Clock}
}

// Key returns the key with id kid, fetching the JWKS when it is stale or
// does not hold kid.
func (r *RemoteKeys) Key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if ks := r.set.Key(kid); len(ks) > 0 && now.Before(r.expiresAt) {
		return &ks[0], nil
	}
	if r.fetchedAt.IsZero() || now.Sub(r.fetchedAt) >= r.minRefresh || !now.Before(r.expiresAt) {
		if err := r.fetch(ctx, now); err != nil {
			// A stale set still verifies the tokens it knows.
			if ks := r.set.Key(kid); len(ks) > 0 {
				return &ks[0], nil
			}
			return nil, err
		}
	}
	if ks := r.set.Key(kid); len(ks) > 0 {
		return &ks[0], nil
	}
	return nil, ErrUnknownKey
}

func (r *RemoteKeys) fetch(ctx context.Context, now time.Time) error {
	r.fetchedAt = now
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	res, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: fetch JWKS: %v", ErrKeysUnavailable, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: fetch JWKS: HTTP %d", ErrKeysUnavailable, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: read JWKS: %v", ErrKeysUnavailable, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("%w: parse JWKS: %v", ErrKeysUnavailable, err)
	}
	r.set = set
	r.expiresAt = now.Add(maxAge(res.Header.Get("Cache-Control"), 5*time.Minute))
	return nil
}

func maxAge(cacheControl string, def time.Duration) time.Duration {
	for _, d := range strings.Split(cacheControl, ",") {
		d = strings.TrimSpace(d)
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return def
}

// ErrKeysUnavailable means the JWKS could not be fetched.
var ErrKeysUnavailable = errors.New("credverify: signing keys unavailable")
