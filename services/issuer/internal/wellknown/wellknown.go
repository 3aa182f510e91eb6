// Package wellknown serves the issuer's public discovery documents over
// plain HTTP, where off-the-shelf JWT and OAuth libraries look for them:
// the JWK Set at /.well-known/jwks.json and the RFC 8414 authorization
// server metadata at /.well-known/oauth-authorization-server.
package wellknown

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// Paths served.
const (
	JWKSPath     = "/.well-known/jwks.json"
	MetadataPath = "/.well-known/oauth-authorization-server"
)

// Cache lifetimes sent in Cache-Control. JWKSMaxAge bounds how stale a
// verifier's copy of the key set can be, so the issuer's publish delay
// (the time a new key is published before it signs) must exceed it plus
// the key directory's poll interval.
const (
	JWKSMaxAge     = 60 * time.Second
	MetadataMaxAge = 5 * time.Minute
)

// Grant types (RFC 8693 token exchange, and jitid's policy-decided issuance).
const (
	GrantTokenExchange  = "urn:ietf:params:oauth:grant-type:token-exchange"   //nolint:gosec // G101: a grant type name, not a secret
	GrantTaskCredential = "urn:jitid:params:oauth:grant-type:task-credential" //nolint:gosec // G101: a grant type name, not a secret
)

// Metadata is the RFC 8414 authorization server metadata of the issuer.
// The endpoints are gRPC methods of jitid.issuer.v1.IssuerService: each
// endpoint URL is the gRPC target followed by the method's path (the
// HTTP/2 path a gRPC call is sent to); the jitid_grpc_* members name the
// methods for clients that speak gRPC.
type Metadata struct {
	Issuer                               string   `json:"issuer"`
	JWKSURI                              string   `json:"jwks_uri"`
	TokenEndpoint                        string   `json:"token_endpoint"`
	IntrospectionEndpoint                string   `json:"introspection_endpoint"`
	RevocationEndpoint                   string   `json:"revocation_endpoint"`
	ResponseTypesSupported               []string `json:"response_types_supported"`
	GrantTypesSupported                  []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported    []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethods     []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods        []string `json:"revocation_endpoint_auth_methods_supported"`
	DPoPSigningAlgValuesSupported        []string `json:"dpop_signing_alg_values_supported"`
	IDTokenSigningAlgValuesSupported     []string `json:"id_token_signing_alg_values_supported"`
	AccessTokenSigningAlgValuesSupported []string `json:"jitid_access_token_signing_alg_values_supported"`
	TokenTypesSupported                  []string `json:"jitid_token_types_supported"`
	GRPCService                          string   `json:"jitid_grpc_service"`
	GRPCTokenMethod                      string   `json:"jitid_grpc_token_method"`
	GRPCTokenExchangeMethod              string   `json:"jitid_grpc_token_exchange_method"`
	GRPCIntrospectionMethod              string   `json:"jitid_grpc_introspection_method"`
	GRPCRevocationMethod                 string   `json:"jitid_grpc_revocation_method"`
	GRPCJWKSMethod                       string   `json:"jitid_grpc_jwks_method"`
}

// NewMetadata returns the metadata of an issuer whose "iss" is issuer,
// whose HTTP documents are under publicURL and whose gRPC API is at
// grpcURL (e.g. "grpc://issuer.example:50051"). algs are the signature
// algorithms of its tokens and of the DPoP proofs it checks.
func NewMetadata(issuer, publicURL, grpcURL string, algs []string) (Metadata, error) {
	for _, u := range []string{publicURL, grpcURL} {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			return Metadata{}, fmt.Errorf("wellknown: %q is not an absolute URL", u)
		}
	}
	publicURL = strings.TrimSuffix(publicURL, "/")
	grpcURL = strings.TrimSuffix(grpcURL, "/")
	svc := issuerv1.IssuerService_ServiceDesc.ServiceName
	method := func(m string) string { return "/" + svc + "/" + m }
	none := []string{"none"}
	return Metadata{
		Issuer:                               issuer,
		JWKSURI:                              publicURL + JWKSPath,
		TokenEndpoint:                        grpcURL + method("IssueCredential"),
		IntrospectionEndpoint:                grpcURL + method("IntrospectCredential"),
		RevocationEndpoint:                   grpcURL + method("RevokeCredentials"),
		ResponseTypesSupported:               []string{},
		GrantTypesSupported:                  []string{GrantTaskCredential, GrantTokenExchange},
		TokenEndpointAuthMethodsSupported:    none,
		IntrospectionEndpointAuthMethods:     none,
		RevocationEndpointAuthMethods:        none,
		DPoPSigningAlgValuesSupported:        algs,
		IDTokenSigningAlgValuesSupported:     algs,
		AccessTokenSigningAlgValuesSupported: algs,
		TokenTypesSupported:                  []string{"urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt"},
		GRPCService:                          svc,
		GRPCTokenMethod:                      method("IssueCredential"),
		GRPCTokenExchangeMethod:              method("ExchangeCredential"),
		GRPCIntrospectionMethod:              method("IntrospectCredential"),
		GRPCRevocationMethod:                 method("RevokeCredentials"),
		GRPCJWKSMethod:                       method("GetSigningKeys"),
	}, nil
}

// Register adds the two documents to an HTTP mux (handle is e.g.
// (*http.ServeMux).Handle). jwks returns the current key set, so that a
// rotation shows at once.
func Register(handle func(pattern string, h http.Handler), jwks func() []byte, md Metadata) error {
	doc, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return fmt.Errorf("wellknown: encode metadata: %w", err)
	}
	handle("GET "+JWKSPath, serve("application/jwk-set+json", JWKSMaxAge, jwks))
	handle("GET "+MetadataPath, serve("application/json", MetadataMaxAge, func() []byte { return doc }))
	return nil
}

func serve(contentType string, maxAge time.Duration, body func() []byte) http.Handler {
	cache := fmt.Sprintf("public, max-age=%d", int(maxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", cache)
		// Anyone may read public keys and metadata, from a browser too.
		h.Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(body())
	})
}
