package subjecttoken

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrAssertionMismatch is wrapped by every *AssertionError.
var ErrAssertionMismatch = errors.New("asserted delegator field disagrees with the subject token")

// AssertionError says which asserted field disagrees with the verified
// token. Field is "id", "entitlements", "time_zone", "authenticated_at" or
// "attributes.<name>".
type AssertionError struct {
	Field string
	// Unproven is set when the field is an attribute the token does not
	// carry at all, rather than one it carries with another value.
	Unproven bool
}

// Error implements error; it names the field, never a value.
func (e *AssertionError) Error() string {
	if e.Unproven {
		return fmt.Sprintf("%v: %s is not in the token", ErrAssertionMismatch, e.Field)
	}
	return fmt.Sprintf("%v: %s", ErrAssertionMismatch, e.Field)
}

// Unwrap returns ErrAssertionMismatch.
func (e *AssertionError) Unwrap() error { return ErrAssertionMismatch }

// Asserted are the delegator fields a request states beside its subject
// token. A zero field asserts nothing.
type Asserted struct {
	ID              string
	Attributes      map[string]string
	Entitlements    []string
	TimeZone        string
	AuthenticatedAt time.Time
}

// CheckAsserted compares what a request asserts with what the token
// proves. Every asserted field must equal the verified one (entitlements as
// sets, times to the second), and every asserted attribute must be in the
// token: a request cannot add what its token lacks. The first field that
// disagrees is returned as an *AssertionError; fields are checked in a
// fixed order so the answer does not vary between calls.
func CheckAsserted(a Asserted, verified *Result) error {
	if a.ID != "" && a.ID != verified.DelegatorID {
		return &AssertionError{Field: "id"}
	}
	names := make([]string, 0, len(a.Attributes))
	for name := range a.Attributes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		got, ok := verified.Attributes[name]
		if !ok {
			return &AssertionError{Field: "attributes." + name, Unproven: true}
		}
		if got != a.Attributes[name] {
			return &AssertionError{Field: "attributes." + name}
		}
	}
	if a.Entitlements != nil && !sameSet(a.Entitlements, verified.Entitlements) {
		return &AssertionError{Field: "entitlements"}
	}
	if a.TimeZone != "" && a.TimeZone != verified.TimeZone {
		return &AssertionError{Field: "time_zone"}
	}
	if !a.AuthenticatedAt.IsZero() &&
		!a.AuthenticatedAt.Truncate(time.Second).Equal(verified.AuthenticatedAt.Truncate(time.Second)) {
		return &AssertionError{Field: "authenticated_at"}
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
