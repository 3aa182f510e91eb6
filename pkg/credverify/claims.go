package credverify

import (
	"context"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
)

// TokenType is the JWT "typ" header of jitid credentials (RFC 9068).
const TokenType = "at+jwt"

// Claims is the claim set of a jitid credential. Registered claims follow
// RFC 7519; "sub" is the delegator and "act" the acting agent (RFC 8693),
// nested for a chain of sub-agents.
type Claims struct {
	jwt.Claims
	// Scope is space separated (RFC 9068).
	Scope string `json:"scope,omitempty"`
	// ClientID is the acting agent (RFC 9068 requires it).
	ClientID string `json:"client_id,omitempty"`
	// Act is the acting agent; Act.Act its parent, and so on.
	Act *Actor `json:"act,omitempty"`
	// Task binds the credential to one task.
	Task TaskClaim `json:"task"`
	// Cnf binds the credential to a key (RFC 7800), when present.
	Cnf *Confirmation `json:"cnf,omitempty"`
	// MaxUses limits presentations when above zero; only online
	// introspection enforces it.
	MaxUses int `json:"max_uses,omitempty"`
}

// Actor is an RFC 8693 actor claim.
type Actor struct {
	Sub string `json:"sub"`
	Act *Actor `json:"act,omitempty"`
}

// TaskClaim is the task a credential was issued for.
type TaskClaim struct {
	ID      string `json:"id"`
	Purpose string `json:"purpose,omitempty"`
	// Sensitivity is LOW, MEDIUM, HIGH or CRITICAL.
	Sensitivity string `json:"sensitivity,omitempty"`
}

// Confirmation is the RFC 7800 "cnf" claim with an RFC 7638 key thumbprint.
type Confirmation struct {
	JKT string `json:"jkt,omitempty"`
}

// Delegator returns the id of the delegator ("sub").
func (c *Claims) Delegator() string { return c.Subject }

// Agent returns the id of the acting agent.
func (c *Claims) Agent() string {
	if c.Act != nil {
		return c.Act.Sub
	}
	return c.ClientID
}

// AgentChain returns the acting agent first, then each agent above it.
func (c *Claims) AgentChain() []string {
	var chain []string
	for a := c.Act; a != nil; a = a.Act {
		chain = append(chain, a.Sub)
	}
	return chain
}

// Scopes returns the granted scopes.
func (c *Claims) Scopes() []string { return strings.Fields(c.Scope) }

// HasScopes reports whether every one of want was granted.
func (c *Claims) HasScopes(want ...string) bool {
	have := c.Scopes()
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

type claimsKey struct{}

// NewContext returns ctx carrying verified claims.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the verified claims that middleware put in ctx.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}
