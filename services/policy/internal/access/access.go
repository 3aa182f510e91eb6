// Package access decides who may ask the policy service for a decision,
// the same way for gRPC (Evaluate, Explain) and the AuthZEN endpoint: only
// an evaluator (the issuer's SPIFFE ID, -evaluators) or an admin (-admins),
// and only an admin may set the decision time. A decision is a fact about
// the policy set that a platform could probe for its own ends (which
// attributes get a CRITICAL scope through), and a caller-chosen time would
// let it dodge time rules; neither is for platforms.
package access

import (
	"errors"
	"fmt"
	"slices"
)

// ErrUnauthenticated means the call has no authenticated caller: the
// server runs without mTLS or a token authenticator, and fails closed.
var ErrUnauthenticated = errors.New("no authenticated caller")

// ErrNotAllowed is wrapped by every refusal of a known caller.
var ErrNotAllowed = errors.New("caller not allowed")

// Rules are the callers allowed to evaluate.
type Rules struct {
	// Evaluators may call Evaluate, Explain and AuthZEN: the issuer's
	// SPIFFE ID goes here.
	Evaluators []string
	// Admins may do what evaluators do and set the decision time (replay).
	Admins []string
}

// Evaluate checks that caller (ok false: none) may ask for a decision, at
// a time of its choosing when setsTime.
func (r Rules) Evaluate(caller string, ok, setsTime bool) error {
	if !ok || caller == "" {
		return ErrUnauthenticated
	}
	admin := slices.Contains(r.Admins, caller)
	if !admin && !slices.Contains(r.Evaluators, caller) {
		return fmt.Errorf("%w: %s is neither an evaluator (-evaluators) nor an admin (-admins) of the policy service", ErrNotAllowed, caller)
	}
	if setsTime && !admin {
		return fmt.Errorf("%w: only an admin (-admins) may set the decision time; leave it out and the server's clock decides", ErrNotAllowed)
	}
	return nil
}
