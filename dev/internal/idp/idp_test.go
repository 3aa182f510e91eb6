package idp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jitid/jitid/dev/internal/idp"
)

var alice = idp.User{
	ID: "alice@example.com", ClientID: "alice", ClientSecret: "alice-secret",
	Audience: []string{"jitid"}, Groups: []string{"finance"}, Roles: []string{"approver"},
	AMR: []string{"pwd", "otp"}, ACR: "urn:example:loa:2", AuthAge: "90s", Zoneinfo: "Europe/Paris",
	// A users file cannot make a token name another subject or issuer.
	Claims: map[string]any{"age_verified": true, "sub": "ceo@example.com", "iss": "https://evil.example"},
}

// serve runs a provider over real HTTP at a fixed clock.
func serve(t *testing.T, now time.Time, users ...idp.User) (*idp.Provider, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	p, err := idp.New(idp.Options{Issuer: issuer, Users: users, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return p, issuer
}

// post sends a token request and decodes the JSON answer.
func post(t *testing.T, issuer, user, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, issuer+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, secret)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func decode(t *testing.T, jwt string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func TestClientCredentialsIssueTheBoundUsersTokens(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	_, issuer := serve(t, now, alice)
	status, body := post(t, issuer, "alice", "alice-secret", url.Values{
		"grant_type": {"client_credentials"}, "scope": {"openid"},
	})
	if status != http.StatusOK {
		t.Fatalf("token endpoint: %d %v", status, body)
	}
	common := map[string]any{
		"iss": issuer, "sub": "alice@example.com",
		"iat": float64(now.Unix()), "nbf": float64(now.Unix()), "exp": float64(now.Add(idp.DefaultTokenLifetime).Unix()),
		"auth_time": float64(now.Add(-90 * time.Second).Unix()),
		"amr":       []any{"pwd", "otp"}, "acr": "urn:example:loa:2", "client_id": "alice",
		"groups": []any{"finance"}, "roles": []any{"approver"}, "zoneinfo": "Europe/Paris", "age_verified": true,
	}
	for _, tc := range []struct {
		field, typ string
		extra      map[string]any
	}{
		{"access_token", "at+jwt", map[string]any{"aud": []any{"jitid"}}},
		{"id_token", "JWT", map[string]any{"aud": []any{"jitid", "alice"}, "azp": "alice"}},
	} {
		raw, _ := body[tc.field].(string)
		header, claims := decode(t, raw)
		if header["typ"] != tc.typ || header["alg"] != "RS256" || header["kid"] == "" {
			t.Errorf("%s header = %v, want typ %s, alg RS256 and a kid", tc.field, header, tc.typ)
		}
		if claims["jti"] == "" {
			t.Errorf("%s has no jti", tc.field)
		}
		delete(claims, "jti")
		want := map[string]any{}
		for k, v := range common {
			want[k] = v
		}
		for k, v := range tc.extra {
			want[k] = v
		}
		if diff := cmp.Diff(want, claims); diff != "" {
			t.Errorf("%s claims (-want +got):\n%s", tc.field, diff)
		}
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(idp.DefaultTokenLifetime/time.Second) {
		t.Errorf("token_type %v, expires_in %v", body["token_type"], body["expires_in"])
	}

	// Without the openid scope there is no ID token.
	_, body = post(t, issuer, "alice", "alice-secret", url.Values{"grant_type": {"client_credentials"}})
	if _, ok := body["id_token"]; ok || body["access_token"] == nil {
		t.Errorf("without openid: %v, want an access token only", body)
	}
}

func TestTokenEndpointRefusesWhatItDoesNotOffer(t *testing.T) {
	t.Parallel()
	_, issuer := serve(t, time.Now(), alice)
	for _, tc := range []struct {
		name, user, secret string
		form               url.Values
		wantErr            string
	}{
		{"wrong secret", "alice", "guess", url.Values{"grant_type": {"client_credentials"}}, "invalid_client"},
		{"unknown client", "ceo", "alice-secret", url.Values{"grant_type": {"client_credentials"}}, "invalid_client"},
		{"password grant", "alice", "alice-secret", url.Values{
			"grant_type": {"password"}, "username": {"ceo@example.com"}, "password": {"x"},
		}, "unsupported_grant_type"},
		{"another scope", "alice", "alice-secret", url.Values{
			"grant_type": {"client_credentials"}, "scope": {"openid admin"},
		}, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, issuer, tc.user, tc.secret, tc.form)
			if status < 400 || body["error"] != tc.wantErr || body["access_token"] != nil {
				t.Fatalf("got %d %v, want error %s", status, body, tc.wantErr)
			}
		})
	}
}

func TestDiscoveryAndKeysDescribeTheProvider(t *testing.T) {
	t.Parallel()
	p, issuer := serve(t, time.Now(), alice)
	req, _ := http.NewRequest(http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	_, disc := do(t, req)
	if disc["issuer"] != issuer || disc["jwks_uri"] != issuer+"/keys" || disc["token_endpoint"] != issuer+"/oauth/token" {
		t.Errorf("discovery = %v", disc)
	}

	keyIDs := func() []string {
		req, _ := http.NewRequest(http.MethodGet, issuer+"/keys", nil)
		_, set := do(t, req)
		var ids []string
		for _, k := range set["keys"].([]any) {
			ids = append(ids, k.(map[string]any)["kid"].(string))
		}
		return ids
	}
	signingKey := func() string {
		_, body := post(t, issuer, "alice", "alice-secret", url.Values{"grant_type": {"client_credentials"}})
		h, _ := decode(t, body["access_token"].(string))
		return h["kid"].(string)
	}
	before, signer := keyIDs(), signingKey()
	if len(before) != 2 || before[0] != signer {
		t.Fatalf("keys %v, signing key %s: want the signing key and the next one", before, signer)
	}
	rotated, err := p.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	// The key that signs after the rotation was published before it.
	if rotated != before[1] || signingKey() != rotated {
		t.Errorf("rotation made %s the signing key, want the published next key %s", rotated, before[1])
	}
	after := keyIDs()
	if len(after) != 3 || !contains(after, signer) {
		t.Errorf("keys after a rotation %v: want the new, the next and the previous (%s)", after, signer)
	}
	if _, err := p.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if contains(keyIDs(), signer) {
		t.Errorf("key %s still published two rotations later", signer)
	}
}

func contains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

func TestUsersFileIsChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
	}{
		{"no users", `{"users": []}`},
		{"unknown field", `{"users": [{"id": "a", "client_id": "a", "client_secret": "s", "audience": ["j"], "admin": true}]}`},
		{"one client for two users", `{"users": [
			{"id": "a", "client_id": "c", "client_secret": "s", "audience": ["j"]},
			{"id": "b", "client_id": "c", "client_secret": "s", "audience": ["j"]}]}`},
		{"no secret", `{"users": [{"id": "a", "client_id": "a", "audience": ["j"]}]}`},
		{"no audience", `{"users": [{"id": "a", "client_id": "a", "client_secret": "s"}]}`},
		{"bad auth_age", `{"users": [{"id": "a", "client_id": "a", "client_secret": "s", "audience": ["j"], "auth_age": "yesterday"}]}`},
		{"bad zoneinfo", `{"users": [{"id": "a", "client_id": "a", "client_secret": "s", "audience": ["j"], "zoneinfo": "Mars/Base"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := idp.LoadUsers(path); err == nil {
				t.Fatal("LoadUsers accepted the file")
			}
		})
	}
}

// syncBuffer is a log sink that Main writes while the test reads.
type syncBuffer struct {
	mu    sync.Mutex
	b     strings.Builder
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func TestMainLogsServingWithTheBoundAddress(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users.json")
	b, _ := json.Marshal(map[string]any{"users": []map[string]any{{
		"id": "alice", "client_id": "alice", "client_secret": "alice-secret-value", "audience": []string{"jitid"},
	}}})
	if err := os.WriteFile(users, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := &syncBuffer{wrote: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() { done <- idp.Main(ctx, []string{"-users", users, "-http", "127.0.0.1:0"}, log, nil) }()

	var addr string
	for addr == "" {
		for _, l := range log.lines() {
			if l["msg"] == "serving" {
				addr, _ = l["http"].(string)
			}
		}
		if addr != "" {
			break
		}
		select {
		case <-log.wrote:
		case err := <-done:
			t.Fatalf("Main returned before serving: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no serving line: %v", log.lines())
		}
	}
	resp, err := http.Get("http://" + addr + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"issuer":"http://`+addr+`"`) {
		t.Errorf("discovery at the logged address: %s", body)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Main after cancel: %v", err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if strings.Contains(log.b.String(), "alice-secret-value") {
		t.Errorf("the log holds a client secret")
	}
}

// A user's token_lifetime replaces the provider's; a negative one issues
// tokens that have already expired, for tests of relying parties.
func TestUserTokenLifetime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	stale := alice
	stale.ClientID, stale.ClientSecret, stale.TokenLifetime = "stale", "stale-secret", "-1m"
	_, issuer := serve(t, now, stale)
	status, body := post(t, issuer, "stale", "stale-secret", url.Values{
		"grant_type": {"client_credentials"}, "scope": {"openid"},
	})
	if status != http.StatusOK {
		t.Fatalf("token endpoint: %d %v", status, body)
	}
	for _, field := range []string{"access_token", "id_token"} {
		raw, _ := body[field].(string)
		_, claims := decode(t, raw)
		if claims["exp"] != float64(now.Add(-time.Minute).Unix()) {
			t.Errorf("%s exp = %v, want a minute before it was issued", field, claims["exp"])
		}
	}
	if e, ok := body["expires_in"]; ok && e != float64(0) {
		t.Errorf("expires_in = %v, want 0 or none", e)
	}
}
