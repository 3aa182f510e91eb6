package policy

import (
	"errors"
	"fmt"
)

// ErrInvalidRequest is wrapped by every *FieldError, so that callers can
// tell a caller's mistake from a failure of the service.
var ErrInvalidRequest = errors.New("invalid request")

// FieldError says which field of a Request is wrong and how. Field is the
// path of the field in the EvaluateRequest proto (e.g. "agent.id",
// "scopes[2]"), so a caller can find it without reading our code.
type FieldError struct {
	Field   string
	Problem string
}

// Error returns "field: problem".
func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns ErrInvalidRequest.
func (e *FieldError) Unwrap() error { return ErrInvalidRequest }

// Sentinel load errors, wrapped by *LoadError (or returned bare when no file
// is involved) so that tests and tools can tell them apart without reading
// messages.
var (
	// ErrParse means a .cedar file is not valid Cedar.
	ErrParse = errors.New("cedar parse error")
	// ErrBadAnnotation means a jitid annotation (@id, @max_ttl, @profile,
	// @obligation, @reason) has a value jitid cannot use, or sits on a policy
	// whose effect makes it meaningless.
	ErrBadAnnotation = errors.New("bad annotation")
	// ErrDuplicateID means two policies share an @id: decisions name
	// policies by id, so ids must be unique across the set.
	ErrDuplicateID = errors.New("duplicate policy id")
	// ErrEmptySet means the source holds no policy at all. An empty set
	// would deny everything, which is far more likely a mistake (wrong
	// path, truncated file) than an intent.
	ErrEmptySet = errors.New("policy set is empty")
	// ErrSchema means the .cedarschema file is not valid Cedar schema, or
	// declares entities or context fields differently from what jitid
	// sends, or the set holds more than one schema.
	ErrSchema = errors.New("bad schema")
	// ErrValidation means a policy does not validate against the schema:
	// an unknown entity type or attribute, a type error, an optional
	// attribute read without `has`, a malformed extension literal such as
	// duration("15x").
	ErrValidation = errors.New("policy does not validate against the schema")
	// ErrRead means the policy source could not be read.
	ErrRead = errors.New("cannot read policy source")
)

// LoadError locates a load failure in a policy file: the file, the line and
// column (of the parse error, or of the policy's first token), and the policy
// id when one is known.
type LoadError struct {
	File   string
	Line   int
	Column int
	Policy string
	Err    error
}

// Error returns "file:line:column: policy "id": cause".
func (e *LoadError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.Policy != "" {
		return fmt.Sprintf("%s: policy %q: %v", loc, e.Policy, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

// Unwrap returns the cause, one of the sentinels above.
func (e *LoadError) Unwrap() error { return e.Err }
