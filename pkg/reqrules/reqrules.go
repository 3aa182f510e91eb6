// Package reqrules checks jitid requests against their rules, in one place
// for every service that receives them: the protovalidate rules written in
// the protos (sizes, counts, syntax), then the few rules protovalidate
// cannot say (a time zone the IANA database knows, rules across fields,
// identifiers in NFC without control or invisible characters).
// The issuer and policy call the same Check, so they cannot disagree.
//
// Check reports every violation, not only the first.
package reqrules

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// Violation is one broken rule: the field path (e.g. "agent.id",
// "scopes[2]", "delegator.attributes[\"k\"]") and what is wrong with it.
// It never quotes the field's value, which may be a secret.
type Violation struct {
	Field       string
	Description string
}

// Error lists every violation of one request.
type Error struct {
	Violations []Violation
}

func (e *Error) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

var (
	validatorOnce sync.Once
	validator     protovalidate.Validator
	validatorErr  error
)

// requests are the messages whose rules Prepare compiles ahead of the
// first call.
var requests = []proto.Message{
	&issuerv1.IssueCredentialRequest{}, &issuerv1.ExchangeCredentialRequest{},
	&issuerv1.IntrospectCredentialRequest{}, &issuerv1.RevokeCredentialsRequest{},
	&issuerv1.CompleteTaskRequest{}, &issuerv1.ListCredentialsRequest{},
	&policyv1.EvaluateRequest{}, &policyv1.ExplainRequest{},
	&auditv1.QueryEventsRequest{}, &auditv1.TailEventsRequest{},
}

// Prepare compiles the rules of every jitid request now rather than on the
// first call, which would otherwise spend a few hundred milliseconds of its
// deadline on it. Services call it at start-up; calling it again is free.
func Prepare() error {
	validatorOnce.Do(func() {
		validator, validatorErr = protovalidate.New(protovalidate.WithMessages(requests...))
	})
	if validatorErr != nil {
		return fmt.Errorf("reqrules: %w", validatorErr)
	}
	return nil
}

// messageRuleFields names the field a message-level rule of the protos (by
// its id) is about, so that its violation names a field like the others.
var messageRuleFields = map[string]string{
	// IssueCredentialRequest: a delegator, or the token that proves one.
	"delegator_or_subject_token": "delegator",
}

// Check returns nil when m keeps every rule, an *Error listing every
// violation otherwise, or another error when the rules themselves cannot
// be compiled (a bug).
func Check(m proto.Message) error {
	if err := Prepare(); err != nil {
		return err
	}
	var out []Violation
	if err := validator.Validate(m); err != nil {
		var ve *protovalidate.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("reqrules: %w", err)
		}
		for _, v := range ve.Violations {
			field := protovalidate.FieldPathString(v.Proto.GetField())
			if field == "" {
				// A rule of the whole message names the field it is about.
				field = messageRuleFields[v.Proto.GetRuleId()]
			}
			out = append(out, Violation{Field: field, Description: v.Proto.GetMessage()})
		}
	}
	out = append(out, goRules(m)...)
	if len(out) > 0 {
		return &Error{Violations: out}
	}
	return nil
}

// goRules are the rules protovalidate cannot say, per request type.
func goRules(m proto.Message) []Violation {
	var out []Violation
	switch r := m.(type) {
	case *issuerv1.IssueCredentialRequest:
		out = append(out, agentClassRequired("agent", r.GetAgent())...)
		out = append(out, delegatorRules("delegator", r.GetDelegator())...)
		out = append(out, timestampRule("task.deadline_time", r.GetTask().GetDeadlineTime())...)
		out = append(out, agentIdentifiers("agent", r.GetAgent())...)
		out = append(out, delegatorIdentifiers("delegator", r.GetDelegator())...)
		out = append(out, taskIdentifiers("task", r.GetTask())...)
		out = append(out, scopesRules("scopes", r.GetScopes())...)
	case *issuerv1.ExchangeCredentialRequest:
		out = append(out, agentClassRequired("agent", r.GetAgent())...)
		out = append(out, agentIdentifiers("agent", r.GetAgent())...)
		out = append(out, scopesRules("scopes", r.GetScopes())...)
	case *policyv1.EvaluateRequest:
		out = append(out, evaluateRules("", r)...)
	case *policyv1.ExplainRequest:
		out = append(out, evaluateRules("request.", r.GetRequest())...)
	case *identityv1.Delegator:
		out = append(out, delegatorRules("", r)...)
		out = append(out, delegatorIdentifiers("", r)...)
	}
	return out
}

func evaluateRules(prefix string, r *policyv1.EvaluateRequest) []Violation {
	if r == nil {
		return nil
	}
	out := delegatorRules(prefix+"delegator", r.GetDelegator())
	out = append(out, timestampRule(prefix+"task.deadline_time", r.GetTask().GetDeadlineTime())...)
	out = append(out, timestampRule(prefix+"decision_time", r.GetDecisionTime())...)
	out = append(out, agentIdentifiers(prefix+"agent", r.GetAgent())...)
	out = append(out, delegatorIdentifiers(prefix+"delegator", r.GetDelegator())...)
	out = append(out, taskIdentifiers(prefix+"task", r.GetTask())...)
	out = append(out, scopesRules(prefix+"scopes", r.GetScopes())...)
	for i, a := range r.GetAgentChain() {
		out = append(out, agentIdentifiers(fmt.Sprintf("%sagent_chain[%d]", prefix, i), a)...)
	}
	if held, chain := len(r.GetAgentChainScopes()), len(r.GetAgentChain()); held != 0 && held != chain {
		out = append(out, Violation{prefix + "agent_chain_scopes", fmt.Sprintf("has %d entries for %d agents in agent_chain; want one per agent or none", held, chain)})
	}
	return out
}

func agentClassRequired(field string, a *identityv1.Agent) []Violation {
	if a != nil && a.GetClass() == identityv1.AgentClass_AGENT_CLASS_UNSPECIFIED {
		return []Violation{{field + ".class", "is required to issue a credential"}}
	}
	return nil
}

func delegatorRules(field string, d *identityv1.Delegator) []Violation {
	if d == nil {
		return nil
	}
	join := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	out := timestampRule(join("authenticate_time"), d.GetAuthenticateTime())
	if tz := d.GetTimeZone(); tz != "" {
		if err := TimeZone(tz); err != nil {
			out = append(out, Violation{join("time_zone"), err.Error()})
		}
	}
	return out
}

func timestampRule(field string, ts *timestamppb.Timestamp) []Violation {
	if ts == nil {
		return nil
	}
	if err := ts.CheckValid(); err != nil {
		return []Violation{{field, "is not a valid timestamp"}}
	}
	return nil
}

var zones sync.Map // name -> error (nil when known)

// TimeZone returns nil when name is an IANA time zone name the time zone
// database knows ("Europe/Paris", "UTC"), an error otherwise. "Local" is
// refused: it names the server's zone, not the delegator's.
func TimeZone(name string) error {
	if v, ok := zones.Load(name); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	err := checkZone(name)
	// Only known names are cached without bound; an unknown one costs a
	// lookup each time rather than memory an attacker could fill.
	if err == nil {
		zones.Store(name, nil)
	}
	return err
}

var errUnknownZone = errors.New("is not an IANA time zone name")

func checkZone(name string) error {
	if name == "" || name == "Local" || len(name) > 256 {
		return errUnknownZone
	}
	if _, err := time.LoadLocation(name); err != nil {
		return errUnknownZone
	}
	return nil
}
