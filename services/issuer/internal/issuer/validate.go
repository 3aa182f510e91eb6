package issuer

import (
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/reqrules"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// Limits on the fields of the lifecycle calls (revoke, complete, list), in
// bytes. The limits of issue and exchange requests are protovalidate rules
// in the protos, checked by pkg/reqrules, the same code policy runs.
const (
	MaxIDBytes     = 256
	MaxReasonBytes = 1024
	// MinTTL is the shortest life a credential can have: JWT times are whole
	// seconds.
	MinTTL = time.Second
)

// IssueRequest asks for a credential for one agent, one delegator and one task.
type IssueRequest struct {
	Agent     *identityv1.Agent
	Delegator *identityv1.Delegator
	Task      *identityv1.Task
	Scopes    []string
	// TTL is the life requested; zero means missing.
	TTL time.Duration
	// Audience is the "aud"; the default audience when empty.
	Audience string
	// CnfJKT, when set, binds the credential to the key with this RFC 7638
	// SHA-256 thumbprint (base64url, 43 characters).
	CnfJKT string
	// Caller is the authenticated platform asking; it owns the credential
	// and the task, and policy judges it.
	Caller string
	// SubjectToken and SubjectTokenType prove the delegator (RFC 8693);
	// without them the delegator is asserted by Caller, which policy must
	// permit.
	SubjectToken     string
	SubjectTokenType string
}

// ExchangeRequest asks for a sub-agent's credential in exchange for the
// parent agent's (RFC 8693 token exchange semantics).
type ExchangeRequest struct {
	// SubjectToken is the parent agent's credential.
	SubjectToken string
	// Agent is the sub-agent.
	Agent  *identityv1.Agent
	Scopes []string
	// TTL is the life requested; zero means missing.
	TTL time.Duration
	// Sensitivity of the sub-task; the parent task's when unspecified,
	// never lower.
	Sensitivity identityv1.Sensitivity
	// Audience is the parent's when empty, and may not differ from it.
	Audience string
	CnfJKT   string
	// Caller is the authenticated platform of the sub-agent; it owns the
	// new credential, and policy judges it.
	Caller string
}

// validateExchange checks r against the rules of ExchangeCredentialRequest.
func validateExchange(r *ExchangeRequest) error {
	return checkRules(&issuerv1.ExchangeCredentialRequest{
		SubjectToken: r.SubjectToken,
		Agent:        r.Agent,
		Scopes:       r.Scopes,
		Ttl:          ttlProto(r.TTL),
		Sensitivity:  r.Sensitivity,
		Audience:     r.Audience,
		CnfJkt:       r.CnfJKT,
	})
}

// validateIssue checks r against the rules of IssueCredentialRequest, then
// the one rule that needs the clock: a deadline already past.
func (s *Issuer) validateIssue(r *IssueRequest, now time.Time) error {
	if r.Delegator == nil && r.SubjectToken == "" {
		// The proto's message rule says the same, without a field to name.
		return invalid("delegator", "is required without a subject_token: send the delegator's subject_token (or, where policy lets this platform assert delegators, the delegator)")
	}
	err := checkRules(&issuerv1.IssueCredentialRequest{
		Agent:            r.Agent,
		Delegator:        r.Delegator,
		Task:             r.Task,
		Scopes:           r.Scopes,
		Ttl:              ttlProto(r.TTL),
		Audience:         r.Audience,
		CnfJkt:           r.CnfJKT,
		SubjectToken:     r.SubjectToken,
		SubjectTokenType: r.SubjectTokenType,
	})
	if err != nil {
		return err
	}
	switch {
	case r.SubjectToken != "" && r.SubjectTokenType == "":
		return invalid("subject_token_type", "is required with subject_token")
	case r.SubjectToken == "" && r.SubjectTokenType != "":
		return invalid("subject_token", "is required with subject_token_type")
	}
	if d := r.Task.GetDeadlineTime(); d != nil && !d.AsTime().After(now) {
		return invalid("task.deadline_time", "is in the past")
	}
	return nil
}

// ttlProto is the TTL as the request carried it: absent when zero.
func ttlProto(ttl time.Duration) *durationpb.Duration {
	if ttl == 0 {
		return nil
	}
	return durationpb.New(ttl)
}

// checkRules runs the request rules shared with policy (pkg/reqrules) and
// reports every violation in one *InvalidArgumentError.
func checkRules(m proto.Message) error {
	err := reqrules.Check(m)
	var re *reqrules.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &re) || len(re.Violations) == 0:
		return err
	}
	out := &InvalidArgumentError{Field: re.Violations[0].Field, Reason: re.Violations[0].Description}
	for _, v := range re.Violations[1:] {
		out.More = append(out.More, FieldViolation{Field: v.Field, Reason: v.Description})
	}
	return out
}

// validateID checks a required identifier.
func validateID(field, id string) error {
	if strings.TrimSpace(id) == "" {
		return invalid(field, "is required")
	}
	return validateText(field, id, MaxIDBytes)
}

// validateText checks an optional string's size and encoding.
func validateText(field, s string, maxBytes int) error {
	if len(s) > maxBytes {
		return invalid(field, "longer than %d bytes", maxBytes)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "is not valid UTF-8")
	}
	return nil
}

func validateSelector(sel Selector) error {
	field := selectorField(sel.Kind)
	if field == "" {
		return invalid("selector", "exactly one of credential_id, task_id, agent_id or delegator_id is required")
	}
	return validateID(field, sel.ID)
}

func selectorField(k SelectorKind) string {
	switch k {
	case ByCredential:
		return "credential_id"
	case ByTask:
		return "task_id"
	case ByAgent:
		return "agent_id"
	case ByDelegator:
		return "delegator_id"
	}
	return ""
}
