package issuergrpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/credverify/issuergrpc"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

const testIssuer = "https://jitid.test"

// issuerServer stands in for the issuer's gRPC API (the real one lives in
// services/issuer, which pkg must not import); it answers from a set of
// active tokens and records what it was asked.
type issuerServer struct {
	issuerv1.UnimplementedIssuerServiceServer
	jwks string

	mu     sync.Mutex
	active map[string]bool
	down   bool
	asked  []*issuerv1.IntrospectCredentialRequest
}

func (s *issuerServer) IntrospectCredential(_ context.Context, req *issuerv1.IntrospectCredentialRequest) (*issuerv1.IntrospectCredentialResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, status.Error(codes.Unavailable, "store unreachable")
	}
	s.asked = append(s.asked, req)
	return &issuerv1.IntrospectCredentialResponse{Active: s.active[req.GetToken()]}, nil
}

func (s *issuerServer) GetSigningKeys(context.Context, *issuerv1.GetSigningKeysRequest) (*issuerv1.GetSigningKeysResponse, error) {
	return &issuerv1.GetSigningKeysResponse{Jwks: s.jwks, Issuer: testIssuer}, nil
}

func TestIssuerGRPC(t *testing.T) {
	t.Parallel()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	if jwk.KeyID, err = credverify.Thumbprint(&jwk); err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", jwk.KeyID))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(id string) string {
		tok, err := jwt.Signed(sig).Claims(credverify.Claims{
			Claims: jwt.Claims{Issuer: testIssuer, Subject: "user:alice", Audience: jwt.Audience{"tickets-api"}, ID: id,
				IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))},
			Scope: "tickets:purchase", Act: &credverify.Actor{Sub: "agent:a"}, Task: credverify.TaskClaim{ID: "task-1"},
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	live, revoked := mint("live"), mint("revoked")

	fake := &issuerServer{jwks: string(set), active: map[string]bool{live: true}}
	srv := grpc.NewServer()
	issuerv1.RegisterIssuerServiceServer(srv, fake)
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

	ctx := context.Background()
	if got, err := issuergrpc.Issuer(ctx, conn); err != nil || got != testIssuer {
		t.Fatalf("Issuer() = %q, %v", got, err)
	}
	v, err := credverify.New(credverify.Options{Issuer: testIssuer, Audience: "tickets-api",
		Keys: issuergrpc.NewKeys(conn, credverify.RemoteKeysOptions{}), Introspector: issuergrpc.NewIntrospector(conn, 0)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		down  bool
		want  error
	}{
		{name: "active", token: live},
		{name: "inactive at the issuer", token: revoked, want: credverify.ErrRevoked},
		{name: "issuer cannot answer", token: live, down: true, want: credverify.ErrIntrospectionUnavailable},
	}
	for _, tt := range tests {
		// Sequential: the rows share the issuer's state.
		t.Run(tt.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.down = tt.down
			fake.mu.Unlock()
			p := credverify.Presentation{Token: tt.token, Proof: "proof", Method: "POST", URI: "https://api.test/tickets/purchase"}
			_, err := v.VerifyPresentation(ctx, p, credverify.Check{Scopes: []string{"tickets:purchase"}, Online: true})
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("VerifyPresentation() = %v, want %v", err, tt.want)
			}
			if tt.down {
				// The gRPC status stays reachable for the caller's logs.
				if status.Code(err) != codes.Unavailable {
					t.Errorf("status.Code(%v) = %v, want Unavailable", err, status.Code(err))
				}
				return
			}
			fake.mu.Lock()
			last := fake.asked[len(fake.asked)-1]
			fake.mu.Unlock()
			want := &issuerv1.IntrospectCredentialRequest{Token: tt.token, DpopProof: "proof", HttpMethod: "POST", HttpUri: "https://api.test/tickets/purchase"}
			if diff := cmp.Diff(want, last, protocmp.Transform()); diff != "" {
				t.Errorf("IntrospectCredential request (-want +got):\n%s", diff)
			}
		})
	}
}
