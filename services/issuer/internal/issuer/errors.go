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

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }
