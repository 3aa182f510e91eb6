package issuer

import (
	"errors"
	"fmt"
	"strings"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Domain errors. Store errors (ErrNotFound, ErrTaskCompleted,
// ErrStoreUnavailable, ErrBadPageToken) are declared in store.go and pass
// through the issuer unchanged.
var (
	// ErrInvalidArgument is matched by every *InvalidArgumentError: the
	// request was refused before anything was asked or written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrDenied is matched by every *DeniedError: policy said no, and no
	// credential was issued.
	ErrDenied = errors.New("credential denied by policy")
	// ErrPolicyUnavailable means no decision could be had (policy down, slow
	// past its deadline, or answering with an error or nonsense). The issuer
	// fails closed: no credential is issued.
	ErrPolicyUnavailable = errors.New("policy service unavailable")
	// ErrSigning means a credential could not be signed.
	ErrSigning = errors.New("credential signing failed")
	// ErrSubjectToken means the subject token of an exchange is not an
	// active credential (forged, malformed, expired, revoked or unknown).
	ErrSubjectToken = errors.New("subject token is not an active credential")
	// ErrNotDelegable means the subject token is active but may not be
	// exchanged: it is bound to a key (cnf) or limited in uses (max_uses),
	// and a derived credential would escape that limit.
	ErrNotDelegable = errors.New("subject credential cannot be delegated")
	// ErrUnauthenticated means the request names no authenticated caller:
	// nothing is issued for nobody.
	ErrUnauthenticated = errors.New("no authenticated caller")
	// ErrSubjectTokenInvalid is matched by every *SubjectTokenError: the
	// delegator's subject token failed verification (forged, expired, for
	// another audience, from an untrusted provider, …). Nothing was asked
	// or written.
	ErrSubjectTokenInvalid = errors.New("subject token refused")
	// ErrIdentityProviderUnavailable means the identity provider of a
	// subject token could not be reached (discovery or key set), so the
	// token could not be checked; it says nothing about the token.
	ErrIdentityProviderUnavailable = errors.New("identity provider unavailable")
	// ErrDelegatorUnproven is matched by a *DeniedError whose decision says
	// delegator_unproven: the caller asserted the delegator without a
	// subject token, and policy does not let it.
	ErrDelegatorUnproven = errors.New("delegator not proven: send the delegator's subject_token")
)

// InvalidArgumentError names the request field that was refused and why.
type InvalidArgumentError struct {
	// Field is the request field path, e.g. "agent.id" or "scopes[2]".
	Field  string
	Reason string
	// More lists further refused fields when a check reported several (the
	// policy service reports every violation at once).
	More []FieldViolation
}

// FieldViolation is one refused request field and why.
type FieldViolation struct {
	Field  string
	Reason string
}

func (e *InvalidArgumentError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *InvalidArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

func invalid(field, format string, args ...any) error {
	return &InvalidArgumentError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DeniedError carries the decision that refused a credential.
type DeniedError struct {
	Decision *identityv1.Decision
}

// Reasons returns the decision's reasons.
func (e *DeniedError) Reasons() []string { return e.Decision.GetReasons() }

func (e *DeniedError) Error() string {
	if r := e.Reasons(); len(r) > 0 {
		return "credential denied: " + strings.Join(r, "; ")
	}
	return "credential denied"
}

// Is makes errors.Is(err, ErrDenied) true, and errors.Is(err,
// ErrDelegatorUnproven) when the decision says the delegator is unproven.
func (e *DeniedError) Is(target error) bool {
	return target == ErrDenied || (target == ErrDelegatorUnproven && e.Decision.GetDelegatorUnproven())
}
