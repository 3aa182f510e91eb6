package signing

import (
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/jitid/jitid/pkg/credverify"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// Claims returns the claim set of c's token. The claim set is
// credverify.Claims, the one resource servers verify, so that the issuer
// and every verifier read the same format:
//
//   - iss, aud, jti, iat, nbf (= iat), exp (RFC 7519)
//   - sub: the delegator; act: {sub: agent} (RFC 8693 delegation), and for
//     a sub-agent act: {sub: sub-agent, act: {sub: parent, act: …}}, the
//     nearest parent nested first
//   - client_id: the agent, scope: space separated (RFC 9068)
//   - task: {id, purpose, sensitivity}
//   - cnf: {jkt} when bound to a key (RFC 7800, RFC 9449)
//   - max_uses when use-limited
func Claims(c *issuer.Credential) *credverify.Claims {
	iat := jwt.NewNumericDate(c.IssuedAt)
	// Innermost first: the top of the chain is the deepest act.
	var act *credverify.Actor
	for i := len(c.Chain) - 1; i >= 0; i-- {
		act = &credverify.Actor{Sub: c.Chain[i].Agent.GetId(), Act: act}
	}
	act = &credverify.Actor{Sub: c.Agent.GetId(), Act: act}
	var cnf *credverify.Confirmation
	if c.CnfJKT != "" {
		cnf = &credverify.Confirmation{JKT: c.CnfJKT}
	}
	return &credverify.Claims{
		Claims: jwt.Claims{
			Issuer:    c.Issuer,
			Subject:   c.Delegator.GetId(),
			Audience:  jwt.Audience{c.Audience},
			ID:        c.ID,
			IssuedAt:  iat,
			NotBefore: iat,
			Expiry:    jwt.NewNumericDate(c.ExpiresAt),
		},
		Scope:    strings.Join(c.Scopes, " "),
		ClientID: c.Agent.GetId(),
		Act:      act,
		Cnf:      cnf,
		MaxUses:  c.MaxUses,
		Task: credverify.TaskClaim{
			ID:          c.Task.GetId(),
			Purpose:     c.Task.GetPurpose(),
			Sensitivity: sensitivityName(c.Task.GetSensitivity()),
		},
	}
}

// sensitivityName is the claim form of a sensitivity: "LOW", "MEDIUM", …
func sensitivityName(s identityv1.Sensitivity) string {
	if s == identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(s.String(), "SENSITIVITY_")
}
