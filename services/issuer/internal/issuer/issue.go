package issuer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
)

// Issued is a credential just minted. Token is returned once, to the
// caller; it is stored nowhere.
type Issued struct {
	Credential *Credential
	Token      string
	Decision   *identityv1.Decision
}

// Issue validates r, asks policy, and, only when policy allows, mints a
// credential and stores it with its issued event (and the expired event
// the sweeper emits later) in one step.
//
// The delegator is proven by r.SubjectToken, or asserted by r.Caller
// (see delegator): the credential, its events and policy's request carry
// the delegator as proven, never as the request described it.
//
// Errors: ErrUnauthenticated (no caller); *InvalidArgumentError (nothing
// asked, nothing written; also a delegator field that disagrees with the
// subject token); *SubjectTokenError (ErrSubjectTokenInvalid) and
// ErrIdentityProviderUnavailable (nothing asked, nothing written);
// *DeniedError (a denied event written, no credential; also when an
// obligation of the decision is not met; errors.Is ErrDelegatorUnproven
// when the caller may not assert the delegator);
// ErrPolicyUnavailable (fail closed: nothing written); ErrTaskCompleted;
// ErrStoreUnavailable; ErrSigning.
func (s *Issuer) Issue(ctx context.Context, r *IssueRequest) (*Issued, error) {
	now := s.now()
	if r.Caller == "" {
		return nil, ErrUnauthenticated
	}
	if err := s.validateIssue(r, now); err != nil {
		return nil, err
	}
	proven, err := s.delegator(ctx, r)
	if err != nil {
		return nil, err
	}
	// From here on the request is for the delegator as proven (or as the
	// caller may assert it), never as the request described it.
	proved := *r
	r = &proved
	r.Delegator = proven.delegator
	if err := s.validateIssue(r, now); err != nil {
		// A token whose claims break a field's rule (an entitlement with a
		// space, too many attributes) cannot describe a delegator.
		return nil, err
	}
	audience := r.Audience
	if audience == "" {
		audience = s.cfg.DefaultAudience
	}

	decision, err := s.decide(ctx, r, audience, proven.assertedBy != "")
	if err != nil {
		return nil, err
	}
	granted, refusal := s.grant(decision, r.Scopes, proven.held, r.Delegator, now)
	if refusal != nil {
		s.recordDenial(ctx, s.denialEvent(r, audience, refusal, now))
		return nil, &DeniedError{Decision: refusal}
	}

	ttl, err := s.ttl(r, decision, now)
	if err != nil {
		return nil, err
	}
	c := &Credential{
		Audience:  audience,
		Agent:     proto.CloneOf(r.Agent),
		Delegator: proto.CloneOf(r.Delegator),
		Task:      proto.CloneOf(r.Task),
		Scopes:    granted,
		CnfJKT:    r.CnfJKT,
		Owner:     r.Caller,
		// Who vouched for the delegator, when no token proved it.
		AssertedBy: proven.assertedBy,
	}
	return s.mint(ctx, c, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, decision, r.Scopes, r.TTL, ttl, now)
}

// grant returns the scopes decision grants of requested (∩ held when held
// is not nil), or, instead, the denial to record: policy said no, an
// obligation of the decision is not met, or the allow grants none of the
// requested scopes (a policy bug, refused like a denial).
func (s *Issuer) grant(d *identityv1.Decision, requested, held []string, delegator *identityv1.Delegator, now time.Time) ([]string, *identityv1.Decision) {
	if !d.GetAllow() {
		return nil, d
	}
	if unmet := s.unmetObligations(d, delegator, now); len(unmet) > 0 {
		return nil, withUnmet(d, unmet)
	}
	granted := grantedScopes(requested, d, held)
	if len(granted) == 0 {
		return nil, emptyGrant(d)
	}
	return granted, nil
}

// grantedScopes is requested ∩ granted by the decision (∩ held, when held
// is not nil), in the request's order. Policy never grants more than
// requested; the issuer makes sure of it rather than trusting it.
func grantedScopes(requested []string, d *identityv1.Decision, held []string) []string {
	granted := make([]string, 0, len(requested))
	for _, sc := range requested {
		if slices.Contains(d.GetGrantedScopes(), sc) && (held == nil || slices.Contains(held, sc)) {
			granted = append(granted, sc)
		}
	}
	return granted
}

// emptyGrant turns an allow that grants nothing into a denial.
func emptyGrant(d *identityv1.Decision) *identityv1.Decision {
	d = proto.CloneOf(d)
	d.Allow = false
	d.Reasons = append(d.Reasons, "no requested scope was granted")
	return d
}

// mint completes c (id, issuer, times, decision, use limit), signs it and
// stores it with its event of type t (issued or exchanged) and the
// expired event the sweeper emits later, in one step.
func (s *Issuer) mint(ctx context.Context, c *Credential, t eventsv1.EventType, decision *identityv1.Decision,
	requestedScopes []string, requestedTTL, ttl time.Duration, now time.Time) (*Issued, error) {
	// JWT times are whole seconds: truncating the expiry (not rounding)
	// keeps the credential inside every bound, the task deadline included.
	issuedAt := now.Truncate(time.Second)
	expiresAt := now.Add(ttl).Truncate(time.Second)
	if !expiresAt.After(issuedAt) {
		return nil, invalid("task.deadline_time", "leaves less than %v", MinTTL)
	}
	c.ID = s.newID()
	c.Issuer = s.cfg.Issuer
	c.IssuedAt = issuedAt
	c.ExpiresAt = expiresAt
	c.Profile = decision.GetProfile()
	c.PolicyVersion = decision.GetPolicyVersion()
	c.DecisionID = decision.GetDecisionId()
	c.MaxUses = max(int(decision.GetMaxUses()), 0)
	token, err := s.signer.Sign(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSigning, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	}

	// The caller of an issuance or exchange is the platform that owns the
	// new credential; the expiry is the issuer's own doing.
	ev := s.credentialEvent(t, c, now, "", c.Owner)
	ev.Decision = decision
	ev.RequestedScopes = requestedScopes
	ev.RequestedTtl = durationpb.New(requestedTTL)
	expired := s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c, c.ExpiresAt, "expired", s.cfg.Self)
	if err := s.store.Issue(ctx, c, ev, expired); err != nil {
		return nil, fmt.Errorf("store credential %s: %w", c.ID, err)
	}
	s.log.InfoContext(ctx, "credential "+eventVerb(t), "credential_id", c.ID, "task_id", c.Task.GetId(),
		"agent_id", c.Agent.GetId(), "delegator_id", c.Delegator.GetId(), "scopes", c.Scopes,
		"expires_at", c.ExpiresAt, "decision_id", c.DecisionID, "parent_id", c.ParentID,
		"max_uses", c.MaxUses, "bound", c.CnfJKT != "")
	return &Issued{Credential: c, Token: token, Decision: decision}, nil
}

func eventVerb(t eventsv1.EventType) string {
	if t == eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED {
		return "exchanged"
	}
	return "issued"
}

// decide asks policy, for the caller as the platform. Every failure,
// including a missing or malformed decision, is ErrPolicyUnavailable:
// without a decision there is no credential. The decision's time is
// policy's own clock: only an admin may set it.
func (s *Issuer) decide(ctx context.Context, r *IssueRequest, audience string, asserted bool) (*identityv1.Decision, error) {
	return s.evaluate(ctx, &policyv1.EvaluateRequest{
		Agent:             r.Agent,
		Delegator:         r.Delegator,
		Task:              r.Task,
		Scopes:            r.Scopes,
		Ttl:               durationpb.New(r.TTL),
		Audience:          audience,
		Platform:          r.Caller,
		DelegatorAsserted: asserted,
	})
}

func (s *Issuer) evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
	d, err := s.policy.Evaluate(ctx, req)
	switch {
	case err != nil:
		// A request policy refused as invalid is the caller's to fix; it
		// passes through with its fields. Anything else fails closed.
		if errors.Is(err, ErrPolicyUnavailable) || errors.Is(err, ErrInvalidArgument) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrPolicyUnavailable, err) //nolint:errorlint // the sentinel is what callers match; the cause is detail, kept out of errors.As and status.FromError
	case d == nil:
		return nil, fmt.Errorf("%w: empty decision", ErrPolicyUnavailable)
	case d.GetAllow() && d.MaxTtl != nil && (d.GetMaxTtl().CheckValid() != nil || d.GetMaxTtl().AsDuration() <= 0):
		return nil, fmt.Errorf("%w: decision with invalid max_ttl %v", ErrPolicyUnavailable, d.GetMaxTtl())
	case d.GetMaxUses() < 0:
		return nil, fmt.Errorf("%w: decision with negative max_uses %d", ErrPolicyUnavailable, d.GetMaxUses())
	}
	return d, nil
}

// ttl is the shortest of: the life requested, the policy's cap, the time
// left before the task's deadline, and the issuer's own ceiling. A decision
// without max_ttl leaves the other three.
func (s *Issuer) ttl(r *IssueRequest, d *identityv1.Decision, now time.Time) (time.Duration, error) {
	ttl := min(r.TTL, s.cfg.MaxTTL)
	if d.MaxTtl != nil {
		ttl = min(ttl, d.GetMaxTtl().AsDuration())
	}
	if r.Task.DeadlineTime != nil {
		ttl = min(ttl, r.Task.GetDeadlineTime().AsTime().Sub(now))
	}
	if ttl < MinTTL {
		return 0, invalid("task.deadline_time", "leaves less than %v", MinTTL)
	}
	return ttl, nil
}

func (s *Issuer) denialEvent(r *IssueRequest, audience string, d *identityv1.Decision, now time.Time) *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{
		Id:        s.newID(),
		Type:      eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED,
		Time:      timestamppb.New(now),
		Agent:     r.Agent,
		Delegator: r.Delegator,
		Task:      r.Task,
		Scopes:    r.Scopes,
		Audience:  audience,
		Decision:  d,
		Issuer:    s.cfg.Issuer,
		Caller:    r.Caller,
		// What was asked, so that the decision can be replayed.
		RequestedScopes: r.Scopes,
		RequestedTtl:    durationpb.New(r.TTL),
	}
}

func (s *Issuer) recordDenial(ctx context.Context, ev *eventsv1.LifecycleEvent) {
	// The caller gets the denial either way: nothing was issued. A denial
	// whose event could not be written is logged rather than turned into
	// UNAVAILABLE, which would invite retries that ask policy again.
	if err := s.store.AppendEvent(ctx, ev.GetTask().GetId(), ev); err != nil {
		s.log.ErrorContext(ctx, "denied event not recorded", "event_id", ev.Id, "task_id", ev.GetTask().GetId(),
			"agent_id", ev.GetAgent().GetId(), "delegator_id", ev.GetDelegator().GetId(), "error", err)
		return
	}
	s.log.InfoContext(ctx, "credential denied", "event_id", ev.Id, "task_id", ev.GetTask().GetId(),
		"agent_id", ev.GetAgent().GetId(), "delegator_id", ev.GetDelegator().GetId(), "reasons", ev.GetDecision().GetReasons(),
		"decision_id", ev.GetDecision().GetDecisionId(), "parent_id", ev.GetParentCredentialId())
}

// credentialEvent is the lifecycle event of one credential, with its
// delegation context, its owner and the caller that caused it. It never
// carries the token.
func (s *Issuer) credentialEvent(t eventsv1.EventType, c *Credential, at time.Time, reason, caller string) *eventsv1.LifecycleEvent {
	return &eventsv1.LifecycleEvent{
		Id:           s.newID(),
		Type:         t,
		Time:         timestamppb.New(at),
		CredentialId: c.ID,
		Agent:        c.Agent,
		Delegator:    c.Delegator,
		Task:         c.Task,
		Scopes:       c.Scopes,
		Audience:     c.Audience,
		IssueTime:    timestamppb.New(c.IssuedAt),
		ExpireTime:   timestamppb.New(c.ExpiresAt),
		Reason:       reason,
		Issuer:       c.Issuer,
		// A sub-agent's events name where its authority came from.
		ParentCredentialId: c.ParentID,
		AgentChain:         c.AgentChain(),
		Caller:             caller,
		Owner:              c.Owner,
		AssertedBy:         c.AssertedBy,
	}
}
