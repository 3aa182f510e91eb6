// Package grpcapi is the gRPC face of the policy engine: it maps
// jitid.policy.v1 messages onto the policy package and its errors onto gRPC
// status codes.
package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/reqrules"
	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/access"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// Server implements policyv1.PolicyServiceServer over a policy.Engine.
type Server struct {
	policyv1.UnimplementedPolicyServiceServer
	engine *policy.Engine
	log    *slog.Logger
	rules  access.Rules
}

// New returns a Server deciding with engine for the callers rules allow.
// Every call needs an authenticated caller (grpcserver.Caller): a server
// wired without an authenticator answers UNAUTHENTICATED, never a
// decision.
func New(engine *policy.Engine, log *slog.Logger, rules access.Rules) *Server {
	if log == nil {
		log = slog.Default()
	}
	// Compiled now, not in the first request's deadline; a failure (a
	// bug in the rules) is returned by every Check as well.
	if err := reqrules.Prepare(); err != nil {
		log.Error("request rules do not compile", "error", err)
	}
	return &Server{engine: engine, log: log, rules: rules}
}

// authorize checks that the caller may ask for req's decision.
func (s *Server) authorize(ctx context.Context, req *policyv1.EvaluateRequest) error {
	caller, ok := grpcserver.Caller(ctx)
	return s.rules.Evaluate(caller, ok, req.GetDecisionTime() != nil)
}

// Register adds the PolicyService to r. Its health follows the server's
// readiness (pkg/grpcserver): an Engine always holds a loaded set, so the
// service can decide as soon as it serves.
func (s *Server) Register(r grpc.ServiceRegistrar) { policyv1.RegisterPolicyServiceServer(r, s) }

// Evaluate implements policyv1.PolicyServiceServer.
func (s *Server) Evaluate(ctx context.Context, req *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	if err := s.authorize(ctx, req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	d, err := s.engine.Evaluate(ctx, ToRequest(req))
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &policyv1.EvaluateResponse{Decision: ToDecision(&d)}, nil
}

// Explain implements policyv1.PolicyServiceServer. It decides like
// Evaluate and lists, per scope, every policy of the set: whether it
// applied, whether it decided, and why.
func (s *Server) Explain(ctx context.Context, req *policyv1.ExplainRequest) (*policyv1.ExplainResponse, error) {
	if err := s.authorize(ctx, req.GetRequest()); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	ex, err := s.engine.Explain(ctx, ToRequest(req.GetRequest()))
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &policyv1.ExplainResponse{Decision: ToDecision(&ex.Decision)}
	scopes := ex.Scopes
	if ex.Assertion != nil {
		// The delegator assertion check comes first, under its action's
		// name (a reserved scope no request can ask for).
		scopes = append([]policy.ScopeExplanation{*ex.Assertion}, scopes...)
	}
	for _, sc := range scopes {
		se := &policyv1.ScopeExplanation{Scope: sc.Scope, Granted: sc.Granted, NarrowedBy: sc.NarrowedBy,
			Sensitivity: fromSensitivity(sc.Sensitivity)}
		for _, p := range sc.Policies {
			se.Policies = append(se.Policies, toPolicyResult(&p))
		}
		resp.Scopes = append(resp.Scopes, se)
	}
	return resp, nil
}

// GetPolicySet implements policyv1.PolicyServiceServer. Any authenticated
// caller may ask.
func (s *Server) GetPolicySet(ctx context.Context, _ *policyv1.GetPolicySetRequest) (*policyv1.GetPolicySetResponse, error) {
	if _, ok := grpcserver.Caller(ctx); !ok {
		return nil, s.toStatus(ctx, access.ErrUnauthenticated)
	}
	st := s.engine.Status()
	resp := &policyv1.GetPolicySetResponse{
		Version:   st.Set.Version(),
		LoadTime:  timestamppb.New(st.LoadedAt),
		Source:    st.Set.Source(),
		PolicyIds: st.Set.PolicyIDs(),
	}
	if st.LastError != nil {
		// Load errors describe policy files (file, line, policy), never
		// request data, so operators may see them.
		resp.LastError = st.LastError.Error()
		resp.LastErrorTime = timestamppb.New(st.LastErrAt)
	}
	return resp, nil
}

// toStatus maps an engine error to a status carrying an ErrorInfo whose
// reason (package statusreason) tells the cases apart. Only request
// mistakes carry their message to the caller; anything else is logged and
// reported as Internal without detail.
//
//	access.ErrUnauthenticated UNAUTHENTICATED UNAUTHENTICATED
//	access.ErrNotAllowed PERMISSION_DENIED  CALLER_NOT_ALLOWED
//	*reqrules.Error     INVALID_ARGUMENT   INVALID_REQUEST; BadRequest lists every field
//	*policy.FieldError  INVALID_ARGUMENT   INVALID_REQUEST; BadRequest names the field
//	context ended       DEADLINE_EXCEEDED / CANCELED
//	anything else       INTERNAL           generic message
func (s *Server) toStatus(ctx context.Context, err error) error {
	var (
		rules *reqrules.Error
		fe    *policy.FieldError
	)
	switch {
	case errors.Is(err, access.ErrUnauthenticated):
		return statusreason.Error(codes.Unauthenticated, "no authenticated caller: the policy service answers only callers it can identify (mTLS or a bearer token)", statusreason.Unauthenticated, nil)
	case errors.Is(err, access.ErrNotAllowed):
		return statusreason.Error(codes.PermissionDenied, err.Error(), statusreason.CallerNotAllowed, nil)
	case errors.As(err, &rules):
		br := &errdetails.BadRequest{}
		for _, v := range rules.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return statusreason.Error(codes.InvalidArgument, rules.Error(), statusreason.InvalidRequest, nil, br)
	case errors.As(err, &fe):
		return statusreason.Error(codes.InvalidArgument, fe.Error(), statusreason.InvalidRequest, nil, &errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Problem}},
		})
	case errors.Is(err, context.DeadlineExceeded):
		return statusreason.Error(codes.DeadlineExceeded, "deadline exceeded", statusreason.DeadlineExceeded, nil)
	case errors.Is(err, context.Canceled):
		return statusreason.Error(codes.Canceled, "canceled", statusreason.Canceled, nil)
	}
	s.log.ErrorContext(ctx, "evaluate failed", "error", err)
	return statusreason.Error(codes.Internal, "internal error", statusreason.Internal, nil)
}

func toPolicyResult(p *policy.PolicyExplanation) *policyv1.PolicyResult {
	effect := policyv1.Effect_EFFECT_PERMIT
	if p.Forbid {
		effect = policyv1.Effect_EFFECT_FORBID
	}
	return &policyv1.PolicyResult{
		PolicyId:    p.ID,
		Effect:      effect,
		Applied:     p.Applied,
		Determining: p.Determining,
		Error:       p.Error,
		Position:    fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column),
		Reason:      p.Reason,
		Explanation: p.Why,
	}
}

// ToRequest maps an EvaluateRequest onto the domain; the replay tool and
// the AuthZEN endpoint build requests the same way.
func ToRequest(r *policyv1.EvaluateRequest) policy.Request {
	req := toRequest(r)
	if held := r.GetAgentChainScopes(); len(held) > 0 {
		req.AgentChainScopes = make([][]string, len(held))
		for i, h := range held {
			// An agent holding nothing is an empty, non-nil list: it
			// narrows every scope away.
			req.AgentChainScopes[i] = append([]string{}, h.GetScopes()...)
		}
	}
	return req
}

func toRequest(r *policyv1.EvaluateRequest) policy.Request {
	req := policy.Request{
		Agent: toAgent(r.GetAgent()),
		Delegator: policy.Delegator{
			ID:           r.GetDelegator().GetId(),
			Attributes:   r.GetDelegator().GetAttributes(),
			Entitlements: r.GetDelegator().GetEntitlements(),
			TimeZone:     r.GetDelegator().GetTimeZone(),
		},
		Task: policy.Task{
			ID:          r.GetTask().GetId(),
			Purpose:     r.GetTask().GetPurpose(),
			Sensitivity: toSensitivity(r.GetTask().GetSensitivity()),
		},
		Scopes:            r.GetScopes(),
		Audience:          r.GetAudience(),
		Platform:          r.GetPlatform(),
		DelegatorAsserted: r.GetDelegatorAsserted(),
	}
	for _, a := range r.GetAgentChain() {
		req.AgentChain = append(req.AgentChain, toAgent(a))
	}
	if t := r.GetDelegator().GetAuthenticateTime(); t != nil {
		req.Delegator.AuthenticatedAt = t.AsTime()
	}
	if t := r.GetTask().GetDeadlineTime(); t != nil {
		req.Task.Deadline = t.AsTime()
	}
	if d := r.GetTtl(); d != nil {
		req.TTL = d.AsDuration()
	}
	if t := r.GetDecisionTime(); t != nil {
		req.Time = t.AsTime()
	}
	return req
}

func toAgent(a *identityv1.Agent) policy.Agent {
	return policy.Agent{
		ID:         a.GetId(),
		Class:      toAgentClass(a.GetClass()),
		Platform:   a.GetPlatform(),
		Attributes: a.GetAttributes(),
	}
}

// Unknown enum numbers map to values the domain rejects, so that a newer
// client's value is INVALID_ARGUMENT rather than a guess.
const unknownEnum = -1

func toAgentClass(c identityv1.AgentClass) policy.AgentClass {
	switch c {
	case identityv1.AgentClass_AGENT_CLASS_UNSPECIFIED:
		return policy.AgentClassUnspecified
	case identityv1.AgentClass_AGENT_CLASS_EPHEMERAL:
		return policy.AgentClassEphemeral
	case identityv1.AgentClass_AGENT_CLASS_RECURRING:
		return policy.AgentClassRecurring
	}
	return unknownEnum
}

func toSensitivity(s identityv1.Sensitivity) policy.Sensitivity {
	switch s {
	case identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED:
		return policy.SensitivityUnspecified
	case identityv1.Sensitivity_SENSITIVITY_LOW:
		return policy.SensitivityLow
	case identityv1.Sensitivity_SENSITIVITY_MEDIUM:
		return policy.SensitivityMedium
	case identityv1.Sensitivity_SENSITIVITY_HIGH:
		return policy.SensitivityHigh
	case identityv1.Sensitivity_SENSITIVITY_CRITICAL:
		return policy.SensitivityCritical
	}
	return unknownEnum
}

func fromSensitivity(s policy.Sensitivity) identityv1.Sensitivity {
	switch s {
	case policy.SensitivityLow:
		return identityv1.Sensitivity_SENSITIVITY_LOW
	case policy.SensitivityMedium:
		return identityv1.Sensitivity_SENSITIVITY_MEDIUM
	case policy.SensitivityHigh:
		return identityv1.Sensitivity_SENSITIVITY_HIGH
	case policy.SensitivityCritical:
		return identityv1.Sensitivity_SENSITIVITY_CRITICAL
	}
	return identityv1.Sensitivity_SENSITIVITY_UNSPECIFIED
}

func toProfile(p policy.Profile) identityv1.Profile {
	switch p {
	case policy.ProfileMinimal:
		return identityv1.Profile_PROFILE_MINIMAL
	case policy.ProfileFull:
		return identityv1.Profile_PROFILE_FULL
	}
	return identityv1.Profile_PROFILE_UNSPECIFIED
}

// ToDecision maps a domain Decision onto its proto.
func ToDecision(d *policy.Decision) *identityv1.Decision {
	out := &identityv1.Decision{
		Allow:         d.Allow,
		GrantedScopes: d.GrantedScopes,
		Profile:       toProfile(d.Profile),
		Obligations:   d.Obligations,
		MaxUses:       d.MaxUses,
		Reasons:       d.Reasons,
		Policies:      d.Policies,
		PolicyVersion: d.PolicyVersion,
		DecisionId:    d.DecisionID,

		DelegatorUnproven: d.DelegatorUnproven,
	}
	if d.MaxTTL > 0 {
		out.MaxTtl = durationpb.New(d.MaxTTL)
	}
	return out
}
