package issuer

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Limits on request fields, in bytes. They bound what one request can make
// the issuer store, sign and publish.
const (
	MaxIDBytes        = 256
	MaxPurposeBytes   = 1024
	MaxScopes         = 64
	MaxScopeBytes     = 128
	MaxAttributes     = 32
	MaxAttributeBytes = 256
	MaxReasonBytes    = 1024
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
}

func validateExchange(r *ExchangeRequest) error {
	if r.SubjectToken == "" {
		return invalid("subject_token", "is required")
	}
	if err := validateAgent(r.Agent); err != nil {
		return err
	}
	if err := validateScopes("scopes", r.Scopes); err != nil {
		return err
	}
	if err := validateTTL(r.TTL); err != nil {
		return err
	}
	if r.Sensitivity != identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED {
		if err := validateSensitivity("sensitivity", r.Sensitivity); err != nil {
			return err
		}
	}
	if err := validateAudience(r.Audience); err != nil {
		return err
	}
	return validateJKT(r.CnfJKT)
}

func validateTTL(ttl time.Duration) error {
	switch {
	case ttl == 0:
		return invalid("ttl", "is required")
	case ttl < 0:
		return invalid("ttl", "must be positive")
	case ttl < MinTTL:
		return invalid("ttl", "must be at least %v", MinTTL)
	}
	return nil
}

func validateAudience(aud string) error {
	if err := validateText("audience", aud, MaxIDBytes); err != nil {
		return err
	}
	if strings.ContainsFunc(aud, unicode.IsSpace) {
		return invalid("audience", "must not contain spaces")
	}
	return nil
}

// validateJKT checks an optional key thumbprint: the unpadded base64url of
// a SHA-256 digest, 43 characters.
func validateJKT(jkt string) error {
	if jkt == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(jkt)
	if len(jkt) != 43 || err != nil || len(b) != sha256.Size {
		return invalid("cnf_jkt", "want the base64url SHA-256 thumbprint of a JWK (RFC 7638), 43 characters")
	}
	return nil
}

func (s *Issuer) validateIssue(r *IssueRequest, now time.Time) error {
	if err := validateAgent(r.Agent); err != nil {
		return err
	}
	if err := validateDelegator(r.Delegator); err != nil {
		return err
	}
	if err := validateTask(r.Task, now); err != nil {
		return err
	}
	if err := validateScopes("scopes", r.Scopes); err != nil {
		return err
	}
	if err := validateTTL(r.TTL); err != nil {
		return err
	}
	if err := validateAudience(r.Audience); err != nil {
		return err
	}
	return validateJKT(r.CnfJKT)
}

func validateAgent(a *identityv1.Agent) error {
	if a == nil {
		return invalid("agent", "is required")
	}
	if err := validateID("agent.id", a.GetId()); err != nil {
		return err
	}
	switch a.GetClass() {
	case identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, identityv1.AgentClass_AGENT_CLASS_RECURRING:
	case identityv1.AgentClass_AGENT_CLASS_UNSPECIFIED:
		return invalid("agent.class", "is required")
	default:
		return invalid("agent.class", "unknown value %d", a.GetClass())
	}
	if err := validateText("agent.platform", a.GetPlatform(), MaxIDBytes); err != nil {
		return err
	}
	return validateAttributes("agent.attributes", a.GetAttributes())
}

func validateDelegator(d *identityv1.Delegator) error {
	if d == nil {
		return invalid("delegator", "is required")
	}
	if err := validateID("delegator.id", d.GetId()); err != nil {
		return err
	}
	if err := validateAttributes("delegator.attributes", d.GetAttributes()); err != nil {
		return err
	}
	if len(d.GetEntitlements()) > 0 {
		if err := validateScopes("delegator.entitlements", d.GetEntitlements()); err != nil {
			return err
		}
	}
	if err := validateText("delegator.time_zone", d.GetTimeZone(), MaxIDBytes); err != nil {
		return err
	}
	if d.AuthenticateTime != nil {
		if err := d.GetAuthenticateTime().CheckValid(); err != nil {
			return invalid("delegator.authenticated_at", "%v", err)
		}
	}
	return nil
}

func validateTask(t *identityv1.Task, now time.Time) error {
	if t == nil {
		return invalid("task", "is required")
	}
	if err := validateID("task.id", t.GetId()); err != nil {
		return err
	}
	if err := validateText("task.purpose", t.GetPurpose(), MaxPurposeBytes); err != nil {
		return err
	}
	if err := validateSensitivity("task.sensitivity", t.GetSensitivity()); err != nil {
		return err
	}
	if t.DeadlineTime != nil {
		if err := t.GetDeadlineTime().CheckValid(); err != nil {
			return invalid("task.deadline", "%v", err)
		}
		if !t.GetDeadlineTime().AsTime().After(now) {
			return invalid("task.deadline", "is in the past")
		}
	}
	return nil
}

func validateSensitivity(field string, v identityv1.Sensitivity) error {
	switch v {
	case identityv1.Sensitivity_SENSITIVITY_LOW, identityv1.Sensitivity_SENSITIVITY_MEDIUM,
		identityv1.Sensitivity_SENSITIVITY_HIGH, identityv1.Sensitivity_SENSITIVITY_CRITICAL:
		return nil
	case identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED:
		return invalid(field, "is required")
	default:
		return invalid(field, "unknown value %d", v)
	}
}

// validateScopes checks a scope list. Scopes travel space separated in the
// token's "scope" claim, so a scope with a space in it would become two.
func validateScopes(field string, scopes []string) error {
	if len(scopes) == 0 {
		return invalid(field, "at least one scope is required")
	}
	if len(scopes) > MaxScopes {
		return invalid(field, "at most %d scopes", MaxScopes)
	}
	seen := make(map[string]bool, len(scopes))
	for i, sc := range scopes {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case strings.TrimSpace(sc) == "":
			return invalid(f, "is blank")
		case len(sc) > MaxScopeBytes:
			return invalid(f, "longer than %d bytes", MaxScopeBytes)
		case !utf8.ValidString(sc):
			return invalid(f, "is not valid UTF-8")
		case strings.ContainsFunc(sc, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			return invalid(f, "must not contain spaces or control characters")
		case seen[sc]:
			return invalid(f, "duplicate scope %q", sc)
		}
		seen[sc] = true
	}
	return nil
}

func validateAttributes(field string, attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return invalid(field, "at most %d entries", MaxAttributes)
	}
	for k, v := range attrs {
		if k == "" || len(k) > MaxAttributeBytes || !utf8.ValidString(k) {
			return invalid(field, "key must be 1 to %d bytes of UTF-8", MaxAttributeBytes)
		}
		if err := validateText(field+"["+k+"]", v, MaxAttributeBytes); err != nil {
			return err
		}
	}
	return nil
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
