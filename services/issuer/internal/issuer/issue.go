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
// Errors: *InvalidArgumentError (nothing asked, nothing written);
// *DeniedError (a denied event written, no credential);
// ErrPolicyUnavailable (fail closed: nothing written); ErrTaskCompleted;
// ErrStoreUnavailable; ErrSigning.
func (s *Issuer) Issue(ctx context.Context, r *IssueRequest) (*Issued, error) {
	now := s.now()
	if err := s.validateIssue(r, now); err != nil {
		return nil, err
	}
	audience := r.Audience
	if audience == "" {
		audience = s.cfg.DefaultAudience
	}

	decision, err := s.decide(ctx, r, audience, now)
	if err != nil {
		return nil, err
	}
	if !decision.GetAllow() {
		s.recordDenial(ctx, r, audience, decision, now)
		return nil, &DeniedError{Decision: decision}
	}

	// Policy never grants more than requested; the issuer makes sure of it
	// rather than trusting it, keeping the request's order.
	granted := make([]string, 0, len(r.Scopes))
	for _, sc := range r.Scopes {
		if slices.Contains(decision.GetGrantedScopes(), sc) {
			granted = append(granted, sc)
		}
	}
	if len(granted) == 0 {
		// An allow with nothing in it is a policy bug; refuse like a denial.
		decision = proto.CloneOf(decision)
		decision.Allow = false
		decision.Reasons = append(decision.Reasons, "no requested scope was granted")
		s.recordDenial(ctx, r, audience, decision, now)
		return nil, &DeniedError{Decision: decision}
	}

	ttl, err := s.ttl(r, decision, now)
	if err != nil {
		return nil, err
	}
	// JWT times are whole seconds: truncating the expiry (not rounding)
	// keeps the credential inside every bound, the task deadline included.
	issuedAt := now.Truncate(time.Second)
	expiresAt := now.Add(ttl).Truncate(time.Second)
	if !expiresAt.After(issuedAt) {
		return nil, invalid("task.deadline", "leaves less than %v", MinTTL)
	}

	c := &Credential{
		ID:            s.newID(),
		Issuer:        s.cfg.Issuer,
		Audience:      audience,
		Agent:         proto.CloneOf(r.Agent),
		Delegator:     proto.CloneOf(r.Delegator),
		Task:          proto.CloneOf(r.Task),
		Scopes:        granted,
		IssuedAt:      issuedAt,
		ExpiresAt:     expiresAt,
		Profile:       decision.GetProfile(),
		PolicyVersion: decision.GetPolicyVersion(),
		DecisionID:    decision.GetDecisionId(),
	}
	token, err := s.signer.Sign(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSigning, err)
	}

	issued := s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c, now, "")
	issued.Decision = decision
	expired := s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c, c.ExpiresAt, "expired")
	if err := s.store.Issue(ctx, c, issued, expired); err != nil {
		return nil, fmt.Errorf("store credential %s: %w", c.ID, err)
	}
	s.log.InfoContext(ctx, "credential issued", "credential_id", c.ID, "task_id", c.Task.GetId(),
		"agent_id", c.Agent.GetId(), "delegator_id", c.Delegator.GetId(), "scopes", c.Scopes,
		"expires_at", c.ExpiresAt, "decision_id", c.DecisionID)
	return &Issued{Credential: c, Token: token, Decision: decision}, nil
}

// decide asks policy. Every failure, including a missing or malformed
// decision, is ErrPolicyUnavailable: without a decision there is no credential.
func (s *Issuer) decide(ctx context.Context, r *IssueRequest, audience string, now time.Time) (*identityv1.Decision, error) {
	d, err := s.policy.Evaluate(ctx, &policyv1.EvaluateRequest{
		Agent:     r.Agent,
		Delegator: r.Delegator,
		Task:      r.Task,
		Scopes:    r.Scopes,
		Ttl:       durationpb.New(r.TTL),
		Time:      timestamppb.New(now),
		Audience:  audience,
	})
	switch {
	case err != nil:
		if errors.Is(err, ErrPolicyUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrPolicyUnavailable, err)
	case d == nil:
		return nil, fmt.Errorf("%w: empty decision", ErrPolicyUnavailable)
	case d.GetAllow() && d.MaxTtl != nil && (d.GetMaxTtl().CheckValid() != nil || d.GetMaxTtl().AsDuration() <= 0):
		return nil, fmt.Errorf("%w: decision with invalid max_ttl %v", ErrPolicyUnavailable, d.GetMaxTtl())
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
	if r.Task.Deadline != nil {
		ttl = min(ttl, r.Task.GetDeadline().AsTime().Sub(now))
	}
	if ttl < MinTTL {
		return 0, invalid("task.deadline", "leaves less than %v", MinTTL)
	}
	return ttl, nil
}

func (s *Issuer) recordDenial(ctx context.Context, r *IssueRequest, audience string, d *identityv1.Decision, now time.Time) {
	ev := &eventsv1.LifecycleEvent{
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
	}
	// The caller gets the denial either way: nothing was issued. A denial
	// whose event could not be written is logged rather than turned into
	// UNAVAILABLE, which would invite retries that ask policy again.
	if err := s.store.AppendEvent(ctx, r.Task.GetId(), ev); err != nil {
		s.log.ErrorContext(ctx, "denied event not recorded", "event_id", ev.Id, "task_id", r.Task.GetId(),
			"agent_id", r.Agent.GetId(), "delegator_id", r.Delegator.GetId(), "error", err)
		return
	}
	s.log.InfoContext(ctx, "credential denied", "event_id", ev.Id, "task_id", r.Task.GetId(),
		"agent_id", r.Agent.GetId(), "delegator_id", r.Delegator.GetId(), "reasons", d.GetReasons(),
		"decision_id", d.GetDecisionId())
}

// credentialEvent is the lifecycle event of one credential, with its
// delegation context. It never carries the token.
func (s *Issuer) credentialEvent(t eventsv1.EventType, c *Credential, at time.Time, reason string) *eventsv1.LifecycleEvent {
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
		IssuedAt:     timestamppb.New(c.IssuedAt),
		ExpiresAt:    timestamppb.New(c.ExpiresAt),
		Reason:       reason,
		Issuer:       c.Issuer,
	}
}
