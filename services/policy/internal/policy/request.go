package policy

import (
	"fmt"
	"time"

	"github.com/jitid/jitid/pkg/reqrules"
)

// AgentClass says how long an agent lives.
type AgentClass int

// The agent classes. AgentClassUnspecified is accepted: the agent is then
// matched by no class rule, which in the default set means the MINIMAL profile.
const (
	AgentClassUnspecified AgentClass = iota
	AgentClassEphemeral
	AgentClassRecurring
)

// String returns the name policies compare against (principal.class).
func (c AgentClass) String() string {
	switch c {
	case AgentClassUnspecified:
		return "UNSPECIFIED"
	case AgentClassEphemeral:
		return "EPHEMERAL"
	case AgentClassRecurring:
		return "RECURRING"
	}
	return fmt.Sprintf("AgentClass(%d)", int(c))
}

func (c AgentClass) valid() bool { return c >= AgentClassUnspecified && c <= AgentClassRecurring }

// Sensitivity grades how much harm a task can do.
type Sensitivity int

// The sensitivities, in increasing order so that their numbers can be
// compared (resource.sensitivity_level in Cedar).
const (
	SensitivityUnspecified Sensitivity = iota
	SensitivityLow
	SensitivityMedium
	SensitivityHigh
	SensitivityCritical
)

// String returns the name policies compare against (resource.sensitivity).
func (s Sensitivity) String() string {
	switch s {
	case SensitivityUnspecified:
		return "UNSPECIFIED"
	case SensitivityLow:
		return "LOW"
	case SensitivityMedium:
		return "MEDIUM"
	case SensitivityHigh:
		return "HIGH"
	case SensitivityCritical:
		return "CRITICAL"
	}
	return fmt.Sprintf("Sensitivity(%d)", int(s))
}

// Profile says what the issuer keeps for a credential.
type Profile int

// The profiles. ProfileUnspecified is only seen on a denial.
const (
	ProfileUnspecified Profile = iota
	ProfileMinimal
	ProfileFull
)

// String returns the name used in @profile annotations.
func (p Profile) String() string {
	switch p {
	case ProfileUnspecified:
		return "UNSPECIFIED"
	case ProfileMinimal:
		return "MINIMAL"
	case ProfileFull:
		return "FULL"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// Agent is the acting software, the Cedar principal.
type Agent struct {
	ID         string
	Class      AgentClass
	Platform   string
	Attributes map[string]string
}

// Delegator is the human or parent agent whose authority the agent uses.
type Delegator struct {
	ID         string
	Attributes map[string]string
	// Entitlements bound the granted scopes: an agent never holds what its
	// delegator lacks. None (nil or empty) means the delegator holds
	// nothing, so nothing is granted: leaving the list out must not lift
	// the bound.
	Entitlements []string
	// TimeZone is an IANA zone name (e.g. "Europe/Paris"). When set,
	// policies see the delegator's local time (context.local_*).
	TimeZone string
	// AuthenticatedAt is when the delegator last authenticated; zero when
	// unknown.
	AuthenticatedAt time.Time
}

// Task is the job the agent exists for, the Cedar resource.
type Task struct {
	ID          string
	Purpose     string
	Sensitivity Sensitivity
	// Deadline, when not zero, bounds the TTL.
	Deadline time.Time
}

// Request asks for a decision on every requested scope.
type Request struct {
	Agent Agent
	// AgentChain lists the agents above a sub-agent, nearest parent first;
	// the principal is "in" each of them.
	AgentChain []Agent
	// AgentChainScopes, when not nil, has one entry per AgentChain agent:
	// the scopes that agent holds. A scope that any of them lacks is never
	// granted. Nil means the caller did not say, and the chain does not
	// narrow the grant.
	AgentChainScopes [][]string
	Delegator        Delegator
	Task             Task
	Scopes           []string
	TTL              time.Duration
	// Time is the time of execution; the engine's clock when zero.
	Time     time.Time
	Audience string
	// Platform is the authenticated caller the issuer acts for (a SPIFFE
	// ID or a token subject), set by the issuer. Policies see it as the
	// entity Jitid::Platform::"<platform>", a parent of the agent, and as
	// context.platform. Empty for callers that do not say; then no
	// Platform entity exists and no platform rule can match.
	Platform string
	// DelegatorAsserted is true when no identity provider's token proved
	// the delegator and Platform asserts it: allowed only where a policy
	// permits Platform the action AssertDelegatorAction.
	DelegatorAsserted bool
}

// AssertDelegatorAction is the Cedar action (Jitid::Action::"delegator:assert")
// a platform must be permitted, as principal Jitid::Platform with the
// delegator as resource, to assert a delegator without a token. It is
// reserved: no request may ask for it as a scope.
const AssertDelegatorAction = "delegator:assert"

// Limits on request fields. They keep one request's cost bounded (each scope
// is one Cedar evaluation) and stop a caller from stuffing the audit trail.
// They are the protovalidate rules of jitid.policy.v1.EvaluateRequest,
// which gRPC requests meet first (pkg/reqrules); Validate applies them to
// requests built without a proto (AuthZEN, policy cases), and
// TestLimitsMatchTheProtoRules keeps the two equal.
const (
	MaxIDBytes         = 256
	MaxPurposeBytes    = 1024
	MaxScopes          = 64
	MaxScopeBytes      = 128
	MaxAttributes      = 32
	MaxAttrKeyBytes    = 128
	MaxAttrValueBytes  = 1024
	MaxEntitlements    = 256
	MaxAgentChain      = 16
	MaxShortFieldBytes = 256 // agent platform, audience, time zone
	MaxPlatformBytes   = 2048
)

// Validate checks r and returns a *FieldError naming the first bad field.
func (r *Request) Validate() error {
	if err := validateAgent("agent", &r.Agent); err != nil {
		return err
	}
	if len(r.AgentChain) > MaxAgentChain {
		return &FieldError{"agent_chain", fmt.Sprintf("more than %d agents", MaxAgentChain)}
	}
	for i := range r.AgentChain {
		if err := validateAgent(fmt.Sprintf("agent_chain[%d]", i), &r.AgentChain[i]); err != nil {
			return err
		}
	}
	if r.AgentChainScopes != nil && len(r.AgentChainScopes) != len(r.AgentChain) {
		return &FieldError{"agent_chain_scopes", fmt.Sprintf("has %d entries for %d agents in agent_chain", len(r.AgentChainScopes), len(r.AgentChain))}
	}
	for i, held := range r.AgentChainScopes {
		if len(held) > MaxEntitlements {
			return &FieldError{fmt.Sprintf("agent_chain_scopes[%d]", i), fmt.Sprintf("more than %d scopes", MaxEntitlements)}
		}
		for j, s := range held {
			if s == "" || len(s) > MaxScopeBytes {
				return &FieldError{fmt.Sprintf("agent_chain_scopes[%d].scopes[%d]", i, j), fmt.Sprintf("must be 1 to %d bytes", MaxScopeBytes)}
			}
		}
	}
	d := &r.Delegator
	if err := checkID("delegator.id", d.ID); err != nil {
		return err
	}
	if err := checkAttributes("delegator.attributes", d.Attributes); err != nil {
		return err
	}
	if len(d.Entitlements) > MaxEntitlements {
		return &FieldError{"delegator.entitlements", fmt.Sprintf("more than %d entries", MaxEntitlements)}
	}
	for i, e := range d.Entitlements {
		if e == "" || len(e) > MaxScopeBytes {
			return &FieldError{fmt.Sprintf("delegator.entitlements[%d]", i), fmt.Sprintf("must be 1 to %d bytes", MaxScopeBytes)}
		}
	}
	if len(d.TimeZone) > MaxShortFieldBytes {
		return &FieldError{"delegator.time_zone", fmt.Sprintf("longer than %d bytes", MaxShortFieldBytes)}
	}
	if d.TimeZone != "" {
		// The issuer runs the same check (pkg/reqrules), so the two never
		// disagree on a zone.
		if err := reqrules.TimeZone(d.TimeZone); err != nil {
			return &FieldError{"delegator.time_zone", err.Error()}
		}
	}
	t := &r.Task
	if err := checkID("task.id", t.ID); err != nil {
		return err
	}
	if len(t.Purpose) > MaxPurposeBytes {
		return &FieldError{"task.purpose", fmt.Sprintf("longer than %d bytes", MaxPurposeBytes)}
	}
	switch {
	case t.Sensitivity == SensitivityUnspecified:
		return &FieldError{"task.sensitivity", "required"}
	case t.Sensitivity < SensitivityLow || t.Sensitivity > SensitivityCritical:
		return &FieldError{"task.sensitivity", "unknown value"}
	}
	switch {
	case len(r.Scopes) == 0:
		return &FieldError{"scopes", "at least one scope is required"}
	case len(r.Scopes) > MaxScopes:
		return &FieldError{"scopes", fmt.Sprintf("more than %d scopes", MaxScopes)}
	}
	for i, s := range r.Scopes {
		if s == "" || len(s) > MaxScopeBytes {
			return &FieldError{fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("must be 1 to %d bytes", MaxScopeBytes)}
		}
		if s == AssertDelegatorAction {
			return &FieldError{fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("%q is reserved (the delegator assertion check) and is never granted", s)}
		}
	}
	if len(r.Platform) > MaxPlatformBytes {
		return &FieldError{"platform", fmt.Sprintf("longer than %d bytes", MaxPlatformBytes)}
	}
	if r.TTL <= 0 {
		return &FieldError{"ttl", "must be positive"}
	}
	if len(r.Audience) > MaxShortFieldBytes {
		return &FieldError{"audience", fmt.Sprintf("longer than %d bytes", MaxShortFieldBytes)}
	}
	return nil
}

func validateAgent(field string, a *Agent) error {
	// The field names are built only on error: Validate runs on every call.
	if a.ID == "" || len(a.ID) > MaxIDBytes {
		return checkID(field+".id", a.ID)
	}
	if !a.Class.valid() {
		return &FieldError{field + ".class", "unknown value"}
	}
	if len(a.Platform) > MaxShortFieldBytes {
		return &FieldError{field + ".platform", fmt.Sprintf("longer than %d bytes", MaxShortFieldBytes)}
	}
	if err := checkAttributes("", a.Attributes); err != nil {
		return checkAttributes(field+".attributes", a.Attributes)
	}
	return nil
}

func checkID(field, id string) error {
	switch {
	case id == "":
		return &FieldError{field, "required"}
	case len(id) > MaxIDBytes:
		return &FieldError{field, fmt.Sprintf("longer than %d bytes", MaxIDBytes)}
	}
	return nil
}

func checkAttributes(field string, m map[string]string) error {
	if len(m) > MaxAttributes {
		return &FieldError{field, fmt.Sprintf("more than %d entries", MaxAttributes)}
	}
	for k, v := range m {
		// The key, not the value, is named: values may be secrets.
		switch {
		case k == "" || len(k) > MaxAttrKeyBytes:
			return &FieldError{field, fmt.Sprintf("keys must be 1 to %d bytes", MaxAttrKeyBytes)}
		case len(v) > MaxAttrValueBytes:
			return &FieldError{fmt.Sprintf("%s[%q]", field, k), fmt.Sprintf("longer than %d bytes", MaxAttrValueBytes)}
		}
	}
	return nil
}
