package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// DelegationPolicy is the policy id a delegation refused by the issuer's
// own narrowing rules carries in its decision, before policy is asked.
const DelegationPolicy = "jitid:delegation-narrowing"

// Exchange mints a sub-agent's credential from its parent's (RFC 8693
// token exchange semantics). The subject token must be an active
// credential. The child narrows, never widens: its scopes are a subset of
// the parent's, its life ends no later than the parent's (a longer TTL is
// clamped, as Issue clamps to every bound), its task is the parent's with a
// sensitivity no lower, its audience the parent's, and the chain of agents
// above it at most Config.MaxChainDepth long. A request that breaks a
// narrowing rule is denied (a denied event written) without asking policy;
// otherwise policy is asked again with the whole chain. The child's
// delegator and task are the parent's; its act claim nests the parent's.
//
// Errors: ErrUnauthenticated (no caller); *InvalidArgumentError; ErrSubjectToken (the subject token is not
// an active credential, or stopped being one before the child was
// stored); ErrNotDelegable (the parent is key-bound or use-limited);
// *DeniedError; ErrPolicyUnavailable; ErrTaskCompleted;
// ErrStoreUnavailable; ErrSigning.
func (s *Issuer) Exchange(ctx context.Context, r *ExchangeRequest) (*Issued, error) {
	now := s.now()
	if r.Caller == "" {
		return nil, ErrUnauthenticated
	}
	if err := validateExchange(r); err != nil {
		return nil, err
	}
	parent, err := s.active(ctx, r.SubjectToken)
	if err != nil {
		return nil, err
	}
	if parent == nil {
		return nil, ErrSubjectToken
	}
	// The child joins the parent's task, which belongs to the parent's
	// owner: refused before policy is asked (the issue script checks it
	// again, atomically).
	if parent.Owner != r.Caller {
		return nil, fmt.Errorf("exchange into task %q: %w", parent.Task.GetId(), ErrCallerNotAllowed)
	}
	// A derived credential would be a bearer, unlimited copy of the
	// parent's authority: a stolen bound token, or a one-shot one, could be
	// laundered through an exchange.
	switch {
	case parent.CnfJKT != "":
		return nil, fmt.Errorf("%w: it is bound to a key (cnf)", ErrNotDelegable)
	case parent.MaxUses > 0:
		return nil, fmt.Errorf("%w: it is limited to %d uses", ErrNotDelegable, parent.MaxUses)
	}
	remaining := parent.ExpiresAt.Sub(now)
	if remaining < MinTTL {
		return nil, ErrSubjectToken
	}

	chain := make([]ChainLink, 0, len(parent.Chain)+1)
	chain = append(chain, ChainLink{Agent: parent.Agent, Scopes: parent.Scopes})
	chain = append(chain, parent.Chain...)
	task := proto.CloneOf(parent.Task)
	if r.Sensitivity != identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED {
		task.Sensitivity = r.Sensitivity
	}
	audience := r.Audience
	if audience == "" {
		audience = parent.Audience
	}
	child := &Credential{
		Audience:  audience,
		Agent:     proto.CloneOf(r.Agent),
		Delegator: parent.Delegator,
		Task:      task,
		ParentID:  parent.ID,
		Chain:     chain,
		CnfJKT:    r.CnfJKT,
		// Owned by the exchange's caller; the store refuses it when the
		// task belongs to another platform.
		Owner: r.Caller,
		// An asserted delegator stays asserted, by the platform that did.
		AssertedBy: parent.AssertedBy,
	}

	if reasons := s.narrowingViolations(r, parent, child); len(reasons) > 0 {
		d := &identityv1.Decision{Reasons: reasons, Policies: []string{DelegationPolicy}, DecisionId: s.newID()}
		s.recordDenial(ctx, s.exchangeDenial(r, child, d, now))
		return nil, &DeniedError{Decision: d}
	}

	// The sub-agent's platform is the caller that asks for it, whoever
	// owns the parent. The delegator stands as the parent's credential
	// proved it: no new assertion is made here.
	req := &policyv1.EvaluateRequest{
		Agent:     child.Agent,
		Delegator: child.Delegator,
		Task:      child.Task,
		Scopes:    r.Scopes,
		Ttl:       durationpb.New(r.TTL),
		Audience:  audience,
		Platform:  r.Caller,
	}
	for _, l := range chain {
		req.AgentChain = append(req.AgentChain, l.Agent)
		req.AgentChainScopes = append(req.AgentChainScopes, &policyv1.HeldScopes{Scopes: l.Scopes})
	}
	decision, err := s.evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	granted, refusal := s.grant(decision, r.Scopes, parent.Scopes, child.Delegator, now)
	if refusal != nil {
		s.recordDenial(ctx, s.exchangeDenial(r, child, refusal, now))
		return nil, &DeniedError{Decision: refusal}
	}
	child.Scopes = granted

	ttl := min(r.TTL, s.cfg.MaxTTL, remaining)
	if decision.MaxTtl != nil {
		ttl = min(ttl, decision.GetMaxTtl().AsDuration())
	}
	if task.DeadlineTime != nil {
		ttl = min(ttl, task.GetDeadlineTime().AsTime().Sub(now))
	}
	if ttl < MinTTL {
		return nil, invalid("ttl", "the parent credential or the task leaves less than %v", MinTTL)
	}
	got, err := s.mint(ctx, child, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED, decision, r.Scopes, r.TTL, ttl, now)
	if errors.Is(err, ErrNotFound) {
		// The parent was revoked or expired between the check and the
		// write: the store refused to link a child to it.
		return nil, fmt.Errorf("%w: %w", ErrSubjectToken, err)
	}
	return got, err
}

// narrowingViolations returns why child would widen parent's authority.
func (s *Issuer) narrowingViolations(r *ExchangeRequest, parent, child *Credential) []string {
	var reasons []string
	if n := len(child.Chain); n > s.cfg.MaxChainDepth {
		reasons = append(reasons, fmt.Sprintf("delegation chain too deep: %d agents above the sub-agent, at most %d", n, s.cfg.MaxChainDepth))
	}
	var widened []string
	for _, sc := range r.Scopes {
		if !slices.Contains(parent.Scopes, sc) {
			widened = append(widened, sc)
		}
	}
	if len(widened) > 0 {
		reasons = append(reasons, "scopes not held by the parent credential: "+strings.Join(widened, " "))
	}
	if ps := parent.Task.GetSensitivity(); child.Task.GetSensitivity() < ps {
		reasons = append(reasons, fmt.Sprintf("sensitivity %s is lower than the parent task's %s", child.Task.GetSensitivity(), ps))
	}
	if child.Audience != parent.Audience {
		reasons = append(reasons, fmt.Sprintf("audience %q differs from the parent credential's %q", child.Audience, parent.Audience))
	}
	return reasons
}

func (s *Issuer) exchangeDenial(r *ExchangeRequest, child *Credential, d *identityv1.Decision, now time.Time) *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{
		Id:                 s.newID(),
		Type:               eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED,
		Time:               timestamppb.New(now),
		Agent:              child.Agent,
		Delegator:          child.Delegator,
		Task:               child.Task,
		Scopes:             r.Scopes,
		Audience:           child.Audience,
		Decision:           d,
		Issuer:             s.cfg.Issuer,
		Caller:             r.Caller,
		ParentCredentialId: child.ParentID,
		AgentChain:         child.AgentChain(),
		RequestedScopes:    r.Scopes,
		RequestedTtl:       durationpb.New(r.TTL),
	}
}
