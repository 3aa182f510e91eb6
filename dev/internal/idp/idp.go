// Package idp is a small OpenID Provider for the demo stack and for tests of
// code that verifies tokens from one. It is built on the op package of
// github.com/zitadel/oidc/v3 (routing, request parsing, client
// authentication and OAuth error responses) and serves, over real HTTP:
//
//	/.well-known/openid-configuration   discovery
//	/keys                               the JWK set (current and previous key)
//	/oauth/token                        the token endpoint
//	/healthz, /ready                    probes
//
// Tokens are issued without a browser through the client-credentials grant
// (RFC 6749 §4.4), each confidential client being bound to one user of the
// users file (see User). That grant is the one a headless demo and a test
// can drive through the provider's real token endpoint: the resource-owner
// password grant is not implemented by zitadel/oidc and is removed by OAuth
// 2.1, the authorization-code grant needs a browser and a login page, and a
// token-exchange or JWT-profile grant would need a token or a signing key
// the caller does not have yet. Binding a client to a user stands in for the
// login a real provider would run: the client secret plays the part of the
// user's password.
//
// The token response holds an RFC 9068 JWT access token (header typ
// "at+jwt") and, when the scope includes "openid", an ID token (typ "JWT").
// Both carry sub, aud, iat, nbf, exp, auth_time, amr, acr, groups, roles,
// zoneinfo and the user's further claims, signed RS256 with the provider's
// current key. The JWK set publishes the next key before it signs anything,
// as large providers do, so relying parties holding a recent copy of the set
// need no refetch at a rotation. RotateKey makes the next key current and
// keeps the previous one in the set, so that tokens issued before a
// rotation verify until they expire; the one before leaves the set.
//
// This provider is for development and tests: it keeps keys in memory and
// trusts its users file. It is not a production identity provider.
package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/crypto"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// DefaultTokenLifetime is how long issued tokens live unless
// Options.TokenLifetime says otherwise.
const DefaultTokenLifetime = 5 * time.Minute

// Options configure a Provider.
type Options struct {
	// Issuer is the provider's issuer URL (iss), for example
	// "http://127.0.0.1:9400". Discovery and tokens name it exactly.
	Issuer string
	// Users are the users and their bound clients.
	Users []User
	// TokenLifetime is the life of issued tokens; zero means
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// Provider is an OpenID Provider. Its methods are safe for concurrent use.
type Provider struct {
	op.UnimplementedServer

	issuer   string
	lifetime time.Duration
	clock    func() time.Time
	clients  map[string]*client

	mu       sync.RWMutex
	previous *signingKey
	current  *signingKey
	next     *signingKey
}

// New returns a Provider with a freshly generated signing key.
func New(o Options) (*Provider, error) {
	if o.Issuer == "" {
		return nil, errors.New("idp: issuer is empty")
	}
	if err := checkUsers(o.Users); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	p := &Provider{
		issuer:   strings.TrimSuffix(o.Issuer, "/"),
		lifetime: o.TokenLifetime,
		clock:    o.Clock,
		clients:  make(map[string]*client, len(o.Users)),
	}
	if p.lifetime <= 0 {
		p.lifetime = DefaultTokenLifetime
	}
	if p.clock == nil {
		p.clock = time.Now
	}
	for _, u := range o.Users {
		p.clients[u.ClientID] = &client{user: u}
	}
	for range 2 {
		if _, err := p.RotateKey(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Issuer returns the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// Handler returns the provider's HTTP handler.
func (p *Provider) Handler() http.Handler {
	return op.RegisterServer(p, endpoints)
}

var endpoints = op.Endpoints{
	Token:   op.NewEndpoint("oauth/token"),
	JwksURI: op.NewEndpoint("keys"),
}

// RotateKey makes the published next key the signing key, keeps the one it
// replaces in the JWK set, drops the key before that and publishes a new
// next key. It returns the id of the key that now signs.
func (p *Provider) RotateKey() (string, error) {
	k, err := newSigningKey()
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.previous, p.current, p.next = p.current, p.next, k
	if p.current == nil {
		return "", nil
	}
	return p.current.id, nil
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
	// signers by header typ: "at+jwt" for access tokens (RFC 9068 §2.1),
	// "JWT" for ID tokens.
	signers map[string]jose.Signer
}

func newSigningKey() (*signingKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("idp: generate key: %w", err)
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	k := &signingKey{id: base64.RawURLEncoding.EncodeToString(raw[:]), key: key, signers: map[string]jose.Signer{}}
	for _, typ := range []string{"at+jwt", "JWT"} {
		k.signers[typ], err = jose.NewSigner(
			jose.SigningKey{Algorithm: jose.RS256, Key: &jose.JSONWebKey{Key: key, KeyID: k.id}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
		)
		if err != nil {
			return nil, fmt.Errorf("idp: signer: %w", err)
		}
	}
	return k, nil
}

func (k *signingKey) sign(claims any, typ string) (string, error) {
	return crypto.Sign(claims, k.signers[typ])
}

// Health implements op.Server.
func (p *Provider) Health(context.Context, *op.Request[struct{}]) (*op.Response, error) {
	return op.NewResponse(op.Status{Status: "ok"}), nil
}

// Ready implements op.Server.
func (p *Provider) Ready(context.Context, *op.Request[struct{}]) (*op.Response, error) {
	return op.NewResponse(op.Status{Status: "ok"}), nil
}

// Discovery implements op.Server: OpenID Connect Discovery 1.0 §3.
func (p *Provider) Discovery(context.Context, *op.Request[struct{}]) (*op.Response, error) {
	return op.NewResponse(&oidc.DiscoveryConfiguration{
		Issuer:        p.issuer,
		TokenEndpoint: p.issuer + endpoints.Token.Relative(),
		JwksURI:       p.issuer + endpoints.JwksURI.Relative(),
		// No response_types_supported: there is no authorization endpoint.
		ScopesSupported:                   []string{oidc.ScopeOpenID},
		GrantTypesSupported:               []oidc.GrantType{oidc.GrantTypeClientCredentials},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{string(jose.RS256)},
		TokenEndpointAuthMethodsSupported: []oidc.AuthMethod{oidc.AuthMethodBasic, oidc.AuthMethodPost},
		ClaimsSupported: []string{
			"iss", "sub", "aud", "exp", "iat", "nbf", "auth_time", "amr", "acr",
			"azp", "client_id", "jti", "groups", "roles", "zoneinfo",
		},
	}), nil
}

// Keys implements op.Server: the public halves of the previous, current
// and next signing keys.
func (p *Provider) Keys(context.Context, *op.Request[struct{}]) (*op.Response, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	set := &jose.JSONWebKeySet{}
	for _, k := range []*signingKey{p.current, p.next, p.previous} {
		if k == nil {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: k.key.Public(), KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig",
		})
	}
	resp := op.NewResponse(set)
	// Relying parties refetch on an unknown key id anyway; a short cache
	// keeps a rotation visible to ones that do not.
	resp.Header.Set("Cache-Control", "max-age=60")
	return resp, nil
}

// VerifyClient implements op.Server: client_secret_basic or
// client_secret_post, compared in constant time. A client assertion is not
// accepted.
func (p *Provider) VerifyClient(_ context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	c, ok := p.clients[r.Data.ClientID]
	if !ok || r.Data.ClientAssertion != "" ||
		subtle.ConstantTimeCompare([]byte(r.Data.ClientSecret), []byte(c.user.ClientSecret)) != 1 {
		// One answer for an unknown client and a wrong secret, so that the
		// endpoint does not tell which client ids exist.
		return nil, oidc.ErrInvalidClient().WithDescription("client authentication failed")
	}
	return c, nil
}

// ClientCredentialsExchange implements op.Server: it issues the bound
// user's access token, and ID token when the scope asks for "openid".
func (p *Provider) ClientCredentialsExchange(_ context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	c, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrServerError()
	}
	for _, s := range r.Data.Scope {
		if s != oidc.ScopeOpenID {
			return nil, oidc.ErrInvalidScope().WithDescription("only the openid scope is offered")
		}
	}
	p.mu.RLock()
	key := p.current
	p.mu.RUnlock()

	u := c.user
	now := p.clock().UTC().Truncate(time.Second)
	lifetime := p.lifetime
	if u.lifetime != 0 {
		lifetime = u.lifetime
	}
	exp := now.Add(lifetime)
	base := oidc.TokenClaims{
		Issuer:                              p.issuer,
		Subject:                             u.ID,
		Expiration:                          oidc.FromTime(exp),
		IssuedAt:                            oidc.FromTime(now),
		NotBefore:                           oidc.FromTime(now),
		AuthTime:                            oidc.FromTime(now.Add(-u.authAge)),
		AuthenticationContextClassReference: u.ACR,
		AuthenticationMethodsReferences:     u.AMR,
		ClientID:                            u.ClientID,
	}

	at := &oidc.AccessTokenClaims{TokenClaims: base, Claims: u.extraClaims()}
	at.Audience = slices.Clone(u.Audience)
	at.JWTID = newJTI()
	access, err := key.sign(at, "at+jwt")
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	resp := &oidc.AccessTokenResponse{
		AccessToken: access,
		TokenType:   oidc.BearerToken,
		ExpiresIn:   uint64(max(lifetime, 0) / time.Second),
		Scope:       r.Data.Scope,
	}
	if slices.Contains(r.Data.Scope, oidc.ScopeOpenID) {
		it := &oidc.IDTokenClaims{TokenClaims: base, Claims: u.extraClaims()}
		it.Audience = oidc.AppendClientIDToAudience(u.ClientID, slices.Clone(u.Audience))
		it.AuthorizedParty = u.ClientID
		it.JWTID = newJTI()
		it.NotBefore = base.NotBefore
		if resp.IDToken, err = key.sign(it, "JWT"); err != nil {
			return nil, oidc.ErrServerError().WithParent(err)
		}
	}
	return op.NewResponse(resp), nil
}

func newJTI() string {
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// extraClaims returns a new map of the claims beyond the registered ones;
// the registered ones win a clash when the token is encoded.
func (u User) extraClaims() map[string]any {
	m := make(map[string]any, len(u.Claims)+3)
	for k, v := range u.Claims {
		m[k] = v
	}
	if len(u.Groups) > 0 {
		m["groups"] = u.Groups
	}
	if len(u.Roles) > 0 {
		m["roles"] = u.Roles
	}
	if u.Zoneinfo != "" {
		m["zoneinfo"] = u.Zoneinfo
	}
	return m
}

// client is the confidential client bound to one user.
type client struct{ user User }

func (c *client) GetID() string                        { return c.user.ClientID }
func (c *client) RedirectURIs() []string               { return nil }
func (c *client) PostLogoutRedirectURIs() []string     { return nil }
func (c *client) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod          { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType   { return nil }
func (c *client) LoginURL(string) string               { return "" }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration       { return 0 }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string { //nolint:revive // var-naming: the name is fixed by op.Client
	return func([]string) []string { return nil }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func([]string) []string { return nil }
}
