package issuer

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Obligations the issuer knows how to meet. Policy attaches them to a
// decision; the issuer checks each one before minting and refuses when one
// is not met, or is one it does not know (fail closed: an obligation nobody
// checks would be a silent grant).
const (
	// ObligationAgeVerified: the delegator's attribute age_verified is "true",
	// as its subject token proves (a platform cannot assert attributes).
	ObligationAgeVerified = "age_verified"
	// ObligationMFARecent: the delegator authenticated within
	// Config.RecentAuthentication (DefaultRecentAuthentication when zero).
	ObligationMFARecent = "mfa_recent"
	// ObligationHumanApproval: a person approved this credential. The issuer
	// takes no approvals itself, so it refuses: policy that asks for one
	// makes the request go through a human workflow first.
	ObligationHumanApproval = "human_approval"
)

// DefaultRecentAuthentication is how recent an authentication mfa_recent
// accepts when Config.RecentAuthentication is zero.
const DefaultRecentAuthentication = 15 * time.Minute

// unmetObligations returns why each obligation of d is not met for
// delegator at now; empty when every one is met.
func (s *Issuer) unmetObligations(d *identityv1.Decision, delegator *identityv1.Delegator, now time.Time) []string {
	var unmet []string
	for _, o := range d.GetObligations() {
		switch o {
		case ObligationAgeVerified:
			if delegator.GetAttributes()["age_verified"] != "true" {
				unmet = append(unmet, `obligation age_verified not met: the delegator's attribute age_verified is not "true"`)
			}
		case ObligationMFARecent:
			at := delegator.GetAuthenticateTime()
			within := s.cfg.RecentAuthentication
			if within == 0 {
				within = DefaultRecentAuthentication
			}
			if at == nil || now.Sub(at.AsTime()) > within {
				unmet = append(unmet, fmt.Sprintf("obligation mfa_recent not met: the delegator did not authenticate within the last %v (delegator.authenticated_at)", within))
			}
		case ObligationHumanApproval:
			unmet = append(unmet, "obligation human_approval not met: this credential needs a person's approval, which the issuer does not take; route the request through an approval workflow")
		default:
			unmet = append(unmet, fmt.Sprintf("obligation %q is not one this issuer can meet; refused rather than ignored", o))
		}
	}
	return unmet
}

// withUnmet turns an allow into a denial carrying the unmet obligations.
func withUnmet(d *identityv1.Decision, unmet []string) *identityv1.Decision {
	d = proto.CloneOf(d)
	d.Allow = false
	d.Reasons = append(d.Reasons, unmet...)
	return d
}
