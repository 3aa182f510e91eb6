package credverify_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jitid/jitid/pkg/credverify"
)

func TestRemoteKeysRefreshOnUnknownKid(t *testing.T) {
	t.Parallel()
	first, second := newSigner(t, jose.ES256), newSigner(t, jose.ES256)
	var serving atomic.Pointer[jose.JSONWebKeySet]
	serving.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{first.jwk}})
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=300")
		_ = json.NewEncoder(w).Encode(serving.Load())
	}))
	defer srv.Close()
	clock := now
	keys := credverify.NewRemoteKeys(srv.URL, credverify.RemoteKeysOptions{MinRefresh: 10 * time.Second, Clock: func() time.Time { return clock }})
	ctx := context.Background()
	if _, err := keys.Key(ctx, first.jwk.KeyID); err != nil {
		t.Fatal(err)
	}
	// A new key is published (rotation): the first token naming it
	// triggers a fetch once the minimum interval has passed.
	serving.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{first.jwk, second.jwk}})
	if _, err := keys.Key(ctx, second.jwk.KeyID); !errors.Is(err, credverify.ErrUnknownKey) {
		t.Errorf("within MinRefresh: err = %v, want ErrUnknownKey (no refetch yet)", err)
	}
	clock = clock.Add(11 * time.Second)
	if _, err := keys.Key(ctx, second.jwk.KeyID); err != nil {
		t.Errorf("after MinRefresh: %v", err)
	}
	// Forged kids do not turn into a request each.
	for range 20 {
		_, _ = keys.Key(ctx, "forged")
	}
	if got := fetches.Load(); got != 2 {
		t.Errorf("fetches = %d, want 2", got)
	}
}

type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  jose.JSONWebKey
	jkt  string
}

func newDPoPKey(t *testing.T) dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &k.PublicKey}
	jkt, err := credverify.Thumbprint(&jwk)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{priv: k, jwk: jwk, jkt: jkt}
}

func (d dpopKey) proof(t *testing.T, method, url, token string, iat time.Time) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: d.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	p, err := jwt.Signed(sig).Claims(map[string]any{
		"jti": "p-1", "htm": method, "htu": url, "iat": iat.Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(sum[:]),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTPMiddleware(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	holder, thief := newDPoPKey(t), newDPoPKey(t)
	v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: es.keys(t), Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	h := v.Middleware(credverify.HTTPOptions{Scopes: []string{"tickets:read"}, PublicURL: "https://api.test"},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := credverify.FromContext(r.Context())
			if !ok {
				t.Error("no claims in context")
				return
			}
			_, _ = w.Write([]byte(c.Delegator() + " " + c.Agent()))
		}))
	plain := es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims())
	boundClaims := goodClaims()
	boundClaims.Cnf = &credverify.Confirmation{JKT: holder.jkt}
	bound := es.sign(t, "at+jwt", es.jwk.KeyID, boundClaims)
	readOnly := goodClaims()
	readOnly.Scope = "tickets:list"
	tests := []struct {
		name   string
		auth   string
		dpop   string
		status int
	}{
		{name: "valid bearer", auth: "Bearer " + plain, status: http.StatusOK},
		{name: "no credential", status: http.StatusUnauthorized},
		{name: "garbage", auth: "Bearer x.y.z", status: http.StatusUnauthorized},
		{name: "missing scope", auth: "Bearer " + es.sign(t, "at+jwt", es.jwk.KeyID, readOnly), status: http.StatusForbidden},
		{name: "bound without proof", auth: "DPoP " + bound, status: http.StatusUnauthorized},
		{name: "bound with holder's proof", auth: "DPoP " + bound, dpop: holder.proof(t, "GET", "https://api.test/tickets", bound, now), status: http.StatusOK},
		{name: "bound with a thief's proof", auth: "DPoP " + bound, dpop: thief.proof(t, "GET", "https://api.test/tickets", bound, now), status: http.StatusUnauthorized},
		{name: "proof for another URL", auth: "DPoP " + bound, dpop: holder.proof(t, "GET", "https://api.test/other", bound, now), status: http.StatusUnauthorized},
		{name: "stale proof", auth: "DPoP " + bound, dpop: holder.proof(t, "GET", "https://api.test/tickets", bound, now.Add(-10*time.Minute)), status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "https://api.test/tickets", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.dpop != "" {
				req.Header.Set("DPoP", tt.dpop)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.status, rec.Body.String())
			}
			if rec.Code == http.StatusOK && rec.Body.String() != "user:alice agent:child" {
				t.Errorf("body = %q", rec.Body.String())
			}
		})
	}
}

type healthServer struct {
	healthpb.UnimplementedHealthServer
}

func (healthServer) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	c, ok := credverify.FromContext(ctx)
	if !ok || c.Task.ID != "task-1" {
		return nil, status.Error(codes.Internal, "no delegation context")
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func TestGRPCInterceptor(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: es.keys(t), Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// A one-method service standing in for any API, with the health
	// messages as its request and response.
	const method = "/tickets.v1.Tickets/Check"
	desc := grpc.ServiceDesc{
		ServiceName: "tickets.v1.Tickets",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Check",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(healthpb.HealthCheckRequest)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) {
					return healthServer{}.Check(ctx, req.(*healthpb.HealthCheckRequest))
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, h)
			},
		}},
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(v.UnaryServerInterceptor(credverify.GRPCOptions{
		Scopes: map[string][]string{method: {"tickets:purchase"}},
	})))
	srv.RegisterService(&desc, healthServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	readOnly := goodClaims()
	readOnly.Scope = "tickets:read"
	tests := []struct {
		name  string
		token string
		want  codes.Code
	}{
		{name: "valid", token: es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims()), want: codes.OK},
		{name: "none", want: codes.Unauthenticated},
		{name: "forged", token: newSigner(t, jose.ES256).sign(t, "at+jwt", es.jwk.KeyID, goodClaims()), want: codes.Unauthenticated},
		{name: "missing scope", token: es.sign(t, "at+jwt", es.jwk.KeyID, readOnly), want: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			}
			err := conn.Invoke(ctx, method, &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
			if status.Code(err) != tt.want {
				t.Errorf("code = %v, want %v (%v)", status.Code(err), tt.want, err)
			}
		})
	}
}

// recordingIntrospector answers active and remembers what it was shown.
type recordingIntrospector struct {
	mu     sync.Mutex
	active bool
	err    error
	got    []credverify.Presentation
}

func (r *recordingIntrospector) Introspect(_ context.Context, p credverify.Presentation) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, p)
	return r.active, r.err
}

func TestHTTPMiddlewareOnline(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	holder := newDPoPKey(t)
	plain := es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims())
	boundClaims := goodClaims()
	boundClaims.Cnf = &credverify.Confirmation{JKT: holder.jkt}
	bound := es.sign(t, "at+jwt", es.jwk.KeyID, boundClaims)
	const url = "https://api.test/tickets/purchase"
	proof := holder.proof(t, "POST", url, bound, now)
	tests := []struct {
		name       string
		intro      *recordingIntrospector
		auth, dpop string
		status     int
		// wantAsked is what the issuer must have been shown (nil: not asked).
		wantAsked *credverify.Presentation
	}{
		{name: "active", intro: &recordingIntrospector{active: true}, auth: "Bearer " + plain, status: http.StatusOK,
			wantAsked: &credverify.Presentation{Token: plain, Method: "POST", URI: url}},
		{name: "inactive (revoked a moment ago)", intro: &recordingIntrospector{}, auth: "Bearer " + plain, status: http.StatusUnauthorized,
			wantAsked: &credverify.Presentation{Token: plain, Method: "POST", URI: url}},
		{name: "issuer unreachable", intro: &recordingIntrospector{err: errors.New("connection refused")}, auth: "Bearer " + plain, status: http.StatusServiceUnavailable,
			wantAsked: &credverify.Presentation{Token: plain, Method: "POST", URI: url}},
		{name: "key-bound: the proof goes to the issuer too", intro: &recordingIntrospector{active: true}, auth: "DPoP " + bound, dpop: proof, status: http.StatusOK,
			wantAsked: &credverify.Presentation{Token: bound, Proof: proof, Method: "POST", URI: url}},
		{name: "refused offline: the issuer is not asked", intro: &recordingIntrospector{active: true}, auth: "Bearer " + plain[:len(plain)-4], status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: testAudience, Keys: es.keys(t),
				Clock: func() time.Time { return now }, Introspector: tt.intro})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			h := v.Middleware(credverify.HTTPOptions{Scopes: []string{"tickets:purchase"}, Online: true, PublicURL: "https://api.test/",
				Logger: slog.New(slog.NewTextHandler(&logs, nil))},
				http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
			req := httptest.NewRequest(http.MethodPost, url, nil)
			req.Header.Set("Authorization", tt.auth)
			if tt.dpop != "" {
				req.Header.Set("DPoP", tt.dpop)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.status, rec.Body.String())
			}
			var want []credverify.Presentation
			if tt.wantAsked != nil {
				want = []credverify.Presentation{*tt.wantAsked}
			}
			if diff := cmp.Diff(want, tt.intro.got); diff != "" {
				t.Errorf("introspected (-want +got):\n%s", diff)
			}
			if tt.status != http.StatusOK && !strings.Contains(logs.String(), "credential refused") {
				t.Errorf("refusal not logged: %q", logs.String())
			}
			if strings.Contains(logs.String(), plain[:len(plain)-4]) || strings.Contains(logs.String(), bound) {
				t.Errorf("the log carries the token: %q", logs.String())
			}
		})
	}
}

func TestUnverifiedID(t *testing.T) {
	t.Parallel()
	es := newSigner(t, jose.ES256)
	tests := []struct{ name, token, want string }{
		{name: "credential", token: es.sign(t, "at+jwt", es.jwk.KeyID, goodClaims()), want: "cred-1"},
		{name: "garbage", token: "x.y.z"},
		{name: "empty", token: ""},
		{name: "one part", token: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := credverify.UnverifiedID(tt.token); got != tt.want {
				t.Errorf("UnverifiedID() = %q, want %q", got, tt.want)
			}
		})
	}
}
