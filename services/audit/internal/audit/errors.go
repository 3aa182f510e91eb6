package audit

import "errors"

// Errors of the audit domain. Callers test them with errors.Is; the gRPC
// API maps the invalid ones to INVALID_ARGUMENT and ErrStoreUnavailable to
// UNAVAILABLE.
var (
	// ErrInvalidEvent reports an event that cannot be recorded (no id, or
	// not encodable).
	ErrInvalidEvent = errors.New("audit: invalid event")
	// ErrInvalidPageToken reports a page token this service did not issue.
	ErrInvalidPageToken = errors.New("audit: invalid page token")
	// ErrInvalidPageSize reports a page size below zero or above MaxPageSize.
	ErrInvalidPageSize = errors.New("audit: invalid page size")
	// ErrInvalidFilter reports a filter that cannot match as asked: an
	// unknown or unspecified event type, or an end time before the start.
	ErrInvalidFilter = errors.New("audit: invalid filter")
	// ErrInvalidSequence reports a negative sequence to tail after.
	ErrInvalidSequence = errors.New("audit: invalid sequence")
	// ErrStoreUnavailable reports that the log store could not be read (the
	// database is down or unreachable); the caller may retry.
	ErrStoreUnavailable = errors.New("audit: log store unavailable")
)
