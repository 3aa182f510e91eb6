// Package statusreason holds the google.rpc.ErrorInfo reasons that the
// issuer, policy and audit services put on every non-OK status, so that a
// caller tells one failure from another by reason, never by message text.
// docs/errors.md lists them with their codes.
//
// Reasons are stable: once published one is never renamed or reused.
package statusreason

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// Domain is the ErrorInfo domain of every jitid service.
const Domain = "jitid.dev"

// The reasons, UPPER_SNAKE_CASE as AIP-193 asks.
const (
	// InvalidRequest: a request field breaks a rule (INVALID_ARGUMENT,
	// with a BadRequest listing every field violation).
	InvalidRequest = "INVALID_REQUEST"
	// PolicyDenied: policy decided against issuing (PERMISSION_DENIED).
	PolicyDenied = "POLICY_DENIED"
	// PolicyUnavailable: no policy decision could be had, so nothing was
	// issued (UNAVAILABLE; fail closed).
	PolicyUnavailable = "POLICY_UNAVAILABLE"
	// StoreUnavailable: the service's store (Redis for the issuer, the
	// log database for audit) failed (UNAVAILABLE).
	StoreUnavailable = "STORE_UNAVAILABLE"
	// CredentialNotFound: no live credential matched (NOT_FOUND).
	CredentialNotFound = "CREDENTIAL_NOT_FOUND" //nolint:gosec // G101: a status reason, not a secret
	// TaskCompleted: the task is completed; it gets no new credential
	// (FAILED_PRECONDITION).
	TaskCompleted = "TASK_COMPLETED"
	// NotDelegable: the subject credential of an exchange is bound to a
	// key or use-limited (FAILED_PRECONDITION).
	NotDelegable = "NOT_DELEGABLE"
	// SubjectTokenInactive: the subject token of an exchange is not an
	// active credential (UNAUTHENTICATED).
	SubjectTokenInactive = "SUBJECT_TOKEN_INACTIVE"
	// Unauthenticated: the call has no authenticated caller: no verified
	// client certificate and no valid bearer token (UNAUTHENTICATED).
	Unauthenticated = "UNAUTHENTICATED"
	// CallerNotAllowed: the authenticated caller may not call this method
	// or act on this credential or task: it is not the owner, an admin or
	// an auditor, as the rule needs (PERMISSION_DENIED).
	CallerNotAllowed = "CALLER_NOT_ALLOWED"
	// TaskNotFound: no task of that id was ever issued for (NOT_FOUND).
	TaskNotFound = "TASK_NOT_FOUND"
	// SubjectTokenInvalid: the delegator's subject token failed
	// verification: signature, issuer, audience, lifetime, age, type or a
	// claim the mapping needs (UNAUTHENTICATED).
	SubjectTokenInvalid = "SUBJECT_TOKEN_INVALID" //nolint:gosec // G101: a status reason, not a secret
	// DelegatorUnproven: no subject token, and policy does not let the
	// calling platform assert delegators (UNAUTHENTICATED).
	DelegatorUnproven = "DELEGATOR_UNPROVEN"
	// IdentityProviderUnavailable: the identity provider of the delegator's
	// subject token could not be reached to check it, so nothing was
	// issued; it says nothing about the token (UNAVAILABLE).
	IdentityProviderUnavailable = "IDENTITY_PROVIDER_UNAVAILABLE"
	// RateLimited: the caller sent more calls than its rate allows
	// (RESOURCE_EXHAUSTED, with a google.rpc.RetryInfo).
	RateLimited = "RATE_LIMITED"
	// QuotaExceeded: the delegator holds as many live credentials as its
	// quota allows (RESOURCE_EXHAUSTED, with a google.rpc.RetryInfo
	// saying when the first of them expires).
	QuotaExceeded = "QUOTA_EXCEEDED"
	// RecordUndecodable: a stored audit record does not decode; VerifyLog
	// says where (DATA_LOSS).
	RecordUndecodable = "RECORD_UNDECODABLE"
	// Canceled: the caller canceled the call (CANCELED).
	Canceled = "CANCELED"
	// DeadlineExceeded: the call's deadline passed first
	// (DEADLINE_EXCEEDED).
	DeadlineExceeded = "DEADLINE_EXCEEDED"
	// Internal: a bug; the cause is logged, never sent (INTERNAL).
	Internal = "INTERNAL"
)

// Error returns a status error with code and msg carrying an ErrorInfo
// with reason, metadata (may be nil) and then the extra details.
func Error(code codes.Code, msg, reason string, metadata map[string]string, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	all := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: metadata}}, details...)
	if ds, err := st.WithDetails(all...); err == nil {
		return ds.Err()
	}
	return st.Err()
}

// Of returns the ErrorInfo reason of err's status when its domain is
// Domain, and "" otherwise.
func Of(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info.GetReason()
		}
	}
	return ""
}

// BadRequest returns the field violations of err's status, nil when it
// carries none.
func BadRequest(err error) []*errdetails.BadRequest_FieldViolation {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}
