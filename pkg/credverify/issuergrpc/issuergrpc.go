// Package issuergrpc connects a credverify.Verifier to the jitid issuer
// over gRPC: online introspection (IntrospectCredential) and the signing
// keys (GetSigningKeys), for resource servers that reach the issuer's gRPC
// port rather than its HTTP JWKS.
//
//	conn, _ := grpc.NewClient(issuerAddr, grpc.WithTransportCredentials(creds))
//	v, _ := credverify.New(credverify.Options{
//		Issuer:       "https://jitid.example.com",
//		Audience:     "tickets-api",
//		Keys:         issuergrpc.NewKeys(conn, credverify.RemoteKeysOptions{}),
//		Introspector: issuergrpc.NewIntrospector(conn, 0),
//	})
package issuergrpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/jitid/jitid/pkg/credverify"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// DefaultTimeout bounds one introspection call when NewIntrospector is
// given none: an online check sits on the request path.
const DefaultTimeout = 2 * time.Second

// Introspector asks the issuer whether a credential is active now
// (IntrospectCredential: answered from the issuer's store, so a revoked
// credential is inactive at once, and a use past max_uses is refused).
// It implements credverify.Introspector.
type Introspector struct {
	client  issuerv1.IssuerServiceClient
	timeout time.Duration
}

// NewIntrospector returns an Introspector over conn; each call is bounded
// by timeout (DefaultTimeout when zero).
func NewIntrospector(conn grpc.ClientConnInterface, timeout time.Duration) *Introspector {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Introspector{client: issuerv1.NewIssuerServiceClient(conn), timeout: timeout}
}

// Introspect reports whether the issuer holds p's credential active,
// passing its DPoP proof for a key-bound credential. An error means the
// issuer did not answer.
func (i *Introspector) Introspect(ctx context.Context, p credverify.Presentation) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, i.timeout)
	defer cancel()
	res, err := i.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{
		Token: p.Token, DpopProof: p.Proof, HttpMethod: p.Method, HttpUri: p.URI,
	})
	if err != nil {
		return false, fmt.Errorf("issuergrpc: IntrospectCredential: %w", err)
	}
	return res.GetActive(), nil
}

// NewKeys returns the issuer's public keys fetched with GetSigningKeys,
// cached and refreshed like credverify.NewRemoteKeys (on an unknown kid,
// at most once per MinRefresh).
func NewKeys(conn grpc.ClientConnInterface, o credverify.RemoteKeysOptions) *credverify.RemoteKeys {
	client := issuerv1.NewIssuerServiceClient(conn)
	return credverify.NewCachedKeys(func(ctx context.Context) ([]byte, time.Duration, error) {
		res, err := client.GetSigningKeys(ctx, &issuerv1.GetSigningKeysRequest{})
		if err != nil {
			return nil, 0, fmt.Errorf("issuergrpc: GetSigningKeys: %w", err)
		}
		return []byte(res.GetJwks()), 0, nil
	}, o)
}

// Issuer returns the "iss" the issuer at conn puts in its credentials, to
// check configuration at start.
func Issuer(ctx context.Context, conn grpc.ClientConnInterface) (string, error) {
	res, err := issuerv1.NewIssuerServiceClient(conn).GetSigningKeys(ctx, &issuerv1.GetSigningKeysRequest{})
	if err != nil {
		return "", fmt.Errorf("issuergrpc: GetSigningKeys: %w", err)
	}
	return res.GetIssuer(), nil
}
