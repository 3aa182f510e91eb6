package credverify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrDiscovery means the issuer's metadata is unusable: it names another
// issuer, or no jwks_uri.
var ErrDiscovery = errors.New("credverify: authorization server metadata refused")

// MetadataPath is the well-known path of OAuth 2.0 authorization server
// metadata (RFC 8414).
const MetadataPath = "/.well-known/oauth-authorization-server"

// ServerMetadata is the part of the issuer's RFC 8414 metadata a resource
// server uses.
type ServerMetadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
	// IntrospectionEndpoint is empty for jitid, whose introspection is gRPC.
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	// SigningAlgs lists the token signature algorithms, when published.
	SigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
}

// DiscoverOptions configure Discover.
type DiscoverOptions struct {
	// Client is a client with a 5s timeout when nil.
	Client *http.Client
	// BaseURL is where the metadata is read when the issuer identifier is
	// not reachable as a URL, as in development (the issuer's default "iss"
	// is https://jitid.local while its HTTP listener is on 127.0.0.1): the
	// metadata is read at BaseURL + MetadataPath + the issuer's path.
	BaseURL string
}

// Discover reads the issuer's authorization server metadata (RFC 8414) and
// returns it once it names issuer as its "issuer" (RFC 8414 §3.3: a
// document for another issuer is refused) and has a jwks_uri. Pass its
// JWKSURI to NewRemoteKeys.
func Discover(ctx context.Context, issuer string, o DiscoverOptions) (*ServerMetadata, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	u, err := MetadataURL(issuer)
	if err != nil {
		return nil, err
	}
	if o.BaseURL != "" {
		base, err := url.Parse(o.BaseURL)
		if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") {
			return nil, fmt.Errorf("credverify: base URL %q: want http(s)://host", o.BaseURL)
		}
		_, rest, _ := strings.Cut(u, MetadataPath)
		u = strings.TrimSuffix(o.BaseURL, "/") + MetadataPath + rest
	}
	body, _, err := httpGet(ctx, o.Client, u, "application/json")
	if err != nil {
		return nil, err
	}
	var md ServerMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDiscovery, u, err)
	}
	if md.Issuer != issuer {
		return nil, fmt.Errorf("%w: %s names issuer %q, want %q", ErrDiscovery, u, md.Issuer, issuer)
	}
	if md.JWKSURI == "" {
		return nil, fmt.Errorf("%w: %s has no jwks_uri", ErrDiscovery, u)
	}
	if j, err := url.Parse(md.JWKSURI); err != nil || (j.Scheme != "https" && j.Scheme != "http") || j.Host == "" {
		return nil, fmt.Errorf("%w: jwks_uri %q is not an http(s) URL", ErrDiscovery, md.JWKSURI)
	}
	return &md, nil
}

// MetadataURL returns where the metadata of issuer is published: the
// well-known path goes between the host and the issuer's path (RFC 8414
// §3.1), so https://id.example.com/tenant reads
// https://id.example.com/.well-known/oauth-authorization-server/tenant.
func MetadataURL(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("credverify: issuer %q is not an http(s) URL without query or fragment", issuer)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + MetadataPath + path, nil
}
