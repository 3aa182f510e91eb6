package audit

import "errors"

// Errors of the audit domain. Callers test them with errors.Is; the gRPC
// API maps every one of them to INVALID_ARGUMENT.
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
)
