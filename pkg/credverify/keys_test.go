package credverify_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitid/jitid/pkg/credverify"
)

// jwksServer serves a JWK Set that a test can change, break and count.
type jwksServer struct {
	srv     *httptest.Server
	set     atomic.Pointer[jose.JSONWebKeySet]
	status  atomic.Int32
	cache   atomic.Pointer[string]
	fetches atomic.Int32
	delay   time.Duration
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	j := &jwksServer{}
	j.set.Store(&jose.JSONWebKeySet{Keys: keys})
	j.status.Store(http.StatusOK)
	cc := "max-age=300"
	j.cache.Store(&cc)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.fetches.Add(1)
		time.Sleep(j.delay)
		if code := int(j.status.Load()); code != http.StatusOK {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Cache-Control", *j.cache.Load())
		_ = json.NewEncoder(w).Encode(j.set.Load())
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func TestRemoteKeys(t *testing.T) {
	t.Parallel()
	k1, k2 := newSigner(t, jose.ES256), newSigner(t, jose.EdDSA)
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, clock *time.Time)
	}{
		{
			// The issuer was down when the API started: that is "cannot
			// verify now" (503), not "forged" (401), until it answers.
			name: "issuer down from the start",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, clock *time.Time) {
				j.status.Store(http.StatusBadGateway)
				for range 3 {
					if _, err := keys.Key(ctx, k1.jwk.KeyID); !errors.Is(err, credverify.ErrKeysUnavailable) {
						t.Fatalf("err = %v, want ErrKeysUnavailable", err)
					}
				}
				if err := keys.Refresh(ctx); !errors.Is(err, credverify.ErrKeysUnavailable) {
					t.Errorf("Refresh() = %v, want ErrKeysUnavailable", err)
				}
				j.status.Store(http.StatusOK)
				*clock = clock.Add(11 * time.Second)
				if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
					t.Errorf("after the issuer came back: %v", err)
				}
			},
		},
		{
			name: "stale set and issuer down: known keys still verify",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, clock *time.Time) {
				if err := keys.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				j.status.Store(http.StatusInternalServerError)
				*clock = clock.Add(time.Hour)
				if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
					t.Errorf("known key with a stale set: %v", err)
				}
				if _, err := keys.Key(ctx, "unknown"); !errors.Is(err, credverify.ErrKeysUnavailable) {
					t.Errorf("unknown kid while down: %v, want ErrKeysUnavailable", err)
				}
				if got := j.fetches.Load(); got != 2 {
					t.Errorf("fetches = %d, want 2 (one refresh of the stale set)", got)
				}
			},
		},
		{
			name: "key removed from the JWKS is refused after expiry",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, clock *time.Time) {
				if _, err := keys.Key(ctx, k2.jwk.KeyID); err != nil {
					t.Fatal(err)
				}
				j.set.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k1.jwk}})
				*clock = clock.Add(301 * time.Second)
				if _, err := keys.Key(ctx, k2.jwk.KeyID); !errors.Is(err, credverify.ErrUnknownKey) {
					t.Errorf("removed key: %v, want ErrUnknownKey", err)
				}
			},
		},
		{
			// max-age=0 must not turn every verification into a request.
			name: "max-age=0 is held for MinRefresh",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, clock *time.Time) {
				zero := "no-cache, max-age=0"
				j.cache.Store(&zero)
				for range 50 {
					if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
						t.Fatal(err)
					}
				}
				*clock = clock.Add(11 * time.Second)
				if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
					t.Fatal(err)
				}
				if got := j.fetches.Load(); got != 2 {
					t.Errorf("fetches = %d, want 2", got)
				}
			},
		},
		{
			name: "an empty JWKS is an error, not a set",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, _ *time.Time) {
				j.set.Store(&jose.JSONWebKeySet{})
				if err := keys.Refresh(ctx); !errors.Is(err, credverify.ErrKeysUnavailable) {
					t.Errorf("Refresh() = %v, want ErrKeysUnavailable", err)
				}
			},
		},
		{
			name: "concurrent callers share one fetch",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, _ *time.Time) {
				var wg sync.WaitGroup
				for range 20 {
					wg.Go(func() {
						if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
				if got := j.fetches.Load(); got != 1 {
					t.Errorf("fetches = %d, want 1", got)
				}
			},
		},
		{
			name: "a caller that gives up does not fail the shared fetch",
			run: func(t *testing.T, j *jwksServer, keys *credverify.RemoteKeys, _ *time.Time) {
				j.delay = 100 * time.Millisecond
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := keys.Key(cctx, k1.jwk.KeyID); !errors.Is(err, context.Canceled) {
					t.Errorf("cancelled caller: %v, want context.Canceled", err)
				}
				if _, err := keys.Key(ctx, k1.jwk.KeyID); err != nil {
					t.Errorf("next caller: %v", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := newJWKSServer(t, k1.jwk, k2.jwk)
			var mu sync.Mutex
			clock := now
			keys := credverify.NewRemoteKeys(j.srv.URL, credverify.RemoteKeysOptions{MinRefresh: 10 * time.Second,
				Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
			tt.run(t, j, keys, &clock)
		})
	}
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	var issuer string
	mux := http.NewServeMux()
	serve := func(path string, md map[string]any) {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			if md["issuer"] == "SELF" {
				md["issuer"] = issuer
			}
			_ = json.NewEncoder(w).Encode(md)
		})
	}
	serve("/.well-known/oauth-authorization-server", map[string]any{"issuer": "SELF", "jwks_uri": "https://keys.test/jwks.json"})
	serve("/.well-known/oauth-authorization-server/tenant", map[string]any{"issuer": "SELF/tenant", "jwks_uri": "https://keys.test/tenant.json"})
	serve("/.well-known/oauth-authorization-server/other", map[string]any{"issuer": "https://evil.test", "jwks_uri": "https://evil.test/jwks.json"})
	serve("/.well-known/oauth-authorization-server/nokeys", map[string]any{"issuer": "SELF"})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL
	mux.HandleFunc("/.well-known/oauth-authorization-server/dev", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": "https://jitid.local/dev", "jwks_uri": srv.URL + "/jwks"})
	})
	tests := []struct {
		name    string
		issuer  string
		base    string
		want    string
		wantErr error
	}{
		{name: "issuer at the root", issuer: srv.URL, want: "https://keys.test/jwks.json"},
		{name: "unreachable issuer read at a base URL", issuer: "https://jitid.local/dev", base: srv.URL, want: srv.URL + "/jwks"},
		{name: "metadata of another issuer", issuer: srv.URL + "/other", wantErr: credverify.ErrDiscovery},
		{name: "no jwks_uri", issuer: srv.URL + "/nokeys", wantErr: credverify.ErrDiscovery},
		{name: "no metadata", issuer: srv.URL + "/missing", wantErr: credverify.ErrKeysUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			md, err := credverify.Discover(context.Background(), tt.issuer, credverify.DiscoverOptions{BaseURL: tt.base})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Discover() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if md.JWKSURI != tt.want {
				t.Errorf("jwks_uri = %q, want %q", md.JWKSURI, tt.want)
			}
		})
	}
}

func TestMetadataURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		issuer, want string
		wantErr      bool
	}{
		{issuer: "https://jitid.example.com", want: "https://jitid.example.com/.well-known/oauth-authorization-server"},
		{issuer: "https://jitid.example.com/", want: "https://jitid.example.com/.well-known/oauth-authorization-server"},
		{issuer: "https://id.example.com/tenant/1", want: "https://id.example.com/.well-known/oauth-authorization-server/tenant/1"},
		{issuer: "ftp://id.example.com", wantErr: true},
		{issuer: "https://id.example.com?x=1", wantErr: true},
		{issuer: "jitid", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			t.Parallel()
			got, err := credverify.MetadataURL(tt.issuer)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("MetadataURL(%q) = %q, %v; want %q, error %v", tt.issuer, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
