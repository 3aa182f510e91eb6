// Package grpcapi serves jitid.issuer.v1.IssuerService: it turns requests
// into calls of the issuer domain, results into responses, and domain
// errors into gRPC status codes, in one place (toStatus).
package grpcapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/reqrules"
	"github.com/jitid/jitid/pkg/statusreason"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo details the service sends.
const ErrorDomain = statusreason.Domain

// Messages of the statuses whose text callers may match on.
const (
	MsgPolicyUnavailable = "policy service unavailable: no credential issued (fail closed)"
	MsgStoreUnavailable  = "credential store unavailable"
	// MsgIdentityProviderUnavailable: the subject token's provider could
	// not be reached to check it; retrying later may succeed.
	MsgIdentityProviderUnavailable = "identity provider unavailable: the subject token could not be checked, no credential issued"
	MsgInternal                    = "internal error"
)

// Server implements issuerv1.IssuerServiceServer.
type Server struct {
	issuerv1.UnimplementedIssuerServiceServer
	iss *issuer.Issuer
	log *slog.Logger
}

// New returns a Server over iss. log receives the causes of errors that are
// not sent to callers (slog.Default when nil).
func New(iss *issuer.Issuer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	// Compiled now, not in the first request's deadline; a failure (a
	// bug in the rules) is returned by every Check as well.
	if err := reqrules.Prepare(); err != nil {
		log.Error("request rules do not compile", "error", err)
	}
	return &Server{iss: iss, log: log}
}

// Register registers the service on r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	issuerv1.RegisterIssuerServiceServer(r, s)
}

// IssueCredential asks policy and, when it allows, mints a credential.
func (s *Server) IssueCredential(ctx context.Context, req *issuerv1.IssueCredentialRequest) (*issuerv1.IssueCredentialResponse, error) {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return nil, s.toStatus(ctx, issuer.ErrUnauthenticated)
	}
	// The domain checks the request with pkg/reqrules, on every path.
	r := &issuer.IssueRequest{
		Agent:            req.GetAgent(),
		Delegator:        req.GetDelegator(),
		Task:             req.GetTask(),
		Scopes:           req.GetScopes(),
		Audience:         req.GetAudience(),
		CnfJKT:           req.GetCnfJkt(),
		Caller:           caller,
		SubjectToken:     req.GetSubjectToken(),
		SubjectTokenType: req.GetSubjectTokenType(),
	}
	ttl, err := requestTTL(req.GetTtl())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	r.TTL = ttl
	r.Caller, _ = grpcserver.Caller(ctx)
	got, err := s.iss.Issue(ctx, r)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &issuerv1.IssueCredentialResponse{Credential: toProto(got.Credential), Decision: got.Decision, Token: got.Token}, nil
}

// IntrospectCredential says whether a token is active; an unknown, forged,
// expired or revoked token is active: false, not an error, and so is an
// active one the caller may not learn about (neither its owner, an admin
// nor a resource server of its audience).
func (s *Server) IntrospectCredential(ctx context.Context, req *issuerv1.IntrospectCredentialRequest) (*issuerv1.IntrospectCredentialResponse, error) {
	caller, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	c, err := s.iss.Introspect(ctx, caller, req.GetToken(), issuer.Proof{
		JWT: req.GetDpopProof(), Method: req.GetHttpMethod(), URI: req.GetHttpUri(),
	})
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if c == nil {
		return &issuerv1.IntrospectCredentialResponse{}, nil
	}
	return &issuerv1.IntrospectCredentialResponse{Active: true, Credential: toProto(c)}, nil
}

// ExchangeCredential mints a sub-agent's credential from its parent's
// (RFC 8693 semantics): narrower scopes, no longer life, no lower
// sensitivity, policy asked again with the whole chain.
func (s *Server) ExchangeCredential(ctx context.Context, req *issuerv1.ExchangeCredentialRequest) (*issuerv1.ExchangeCredentialResponse, error) {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return nil, s.toStatus(ctx, issuer.ErrUnauthenticated)
	}
	// The domain checks the request with pkg/reqrules, on every path.
	r := &issuer.ExchangeRequest{
		SubjectToken: req.GetSubjectToken(),
		Agent:        req.GetAgent(),
		Scopes:       req.GetScopes(),
		Sensitivity:  req.GetSensitivity(),
		Audience:     req.GetAudience(),
		CnfJKT:       req.GetCnfJkt(),
		Caller:       caller,
	}
	ttl, err := requestTTL(req.GetTtl())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	r.TTL = ttl
	r.Caller, _ = grpcserver.Caller(ctx)
	got, err := s.iss.Exchange(ctx, r)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &issuerv1.ExchangeCredentialResponse{Credential: toProto(got.Credential), Decision: got.Decision, Token: got.Token}, nil
}

// RevokeCredentials revokes by exactly one of credential, task, agent or
// delegator id.
func (s *Server) RevokeCredentials(ctx context.Context, req *issuerv1.RevokeCredentialsRequest) (*issuerv1.RevokeCredentialsResponse, error) {
	caller, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	var sel issuer.Selector
	switch v := req.GetSelector().(type) {
	case *issuerv1.RevokeCredentialsRequest_CredentialId:
		sel = issuer.Selector{Kind: issuer.ByCredential, ID: v.CredentialId}
	case *issuerv1.RevokeCredentialsRequest_TaskId:
		sel = issuer.Selector{Kind: issuer.ByTask, ID: v.TaskId}
	case *issuerv1.RevokeCredentialsRequest_AgentId:
		sel = issuer.Selector{Kind: issuer.ByAgent, ID: v.AgentId}
	case *issuerv1.RevokeCredentialsRequest_DelegatorId:
		sel = issuer.Selector{Kind: issuer.ByDelegator, ID: v.DelegatorId}
	}
	ids, err := s.iss.Revoke(ctx, caller, sel, req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &issuerv1.RevokeCredentialsResponse{Revoked: int64(len(ids)), CredentialIds: ids}, nil
}

// CompleteTask revokes every credential of a task and records its end.
func (s *Server) CompleteTask(ctx context.Context, req *issuerv1.CompleteTaskRequest) (*issuerv1.CompleteTaskResponse, error) {
	caller, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	ids, err := s.iss.CompleteTask(ctx, caller, req.GetTaskId(), req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &issuerv1.CompleteTaskResponse{Revoked: int64(len(ids)), CredentialIds: ids}, nil
}

// ListCredentials lists live credentials of a task, an agent or a
// delegator; metadata only.
func (s *Server) ListCredentials(ctx context.Context, req *issuerv1.ListCredentialsRequest) (*issuerv1.ListCredentialsResponse, error) {
	caller, err := authenticated(ctx)
	if err != nil {
		return nil, err
	}
	if err := reqrules.Check(req); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	var sel issuer.Selector
	switch v := req.GetSelector().(type) {
	case *issuerv1.ListCredentialsRequest_TaskId:
		sel = issuer.Selector{Kind: issuer.ByTask, ID: v.TaskId}
	case *issuerv1.ListCredentialsRequest_AgentId:
		sel = issuer.Selector{Kind: issuer.ByAgent, ID: v.AgentId}
	case *issuerv1.ListCredentialsRequest_DelegatorId:
		sel = issuer.Selector{Kind: issuer.ByDelegator, ID: v.DelegatorId}
	}
	page, err := s.iss.List(ctx, caller, sel, pageSize(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &issuerv1.ListCredentialsResponse{NextPageToken: page.NextToken}
	for _, c := range page.Credentials {
		resp.Credentials = append(resp.Credentials, toProto(c))
	}
	return resp, nil
}

// GetSigningKeys returns the JWK Set that verifies credentials.
func (s *Server) GetSigningKeys(context.Context, *issuerv1.GetSigningKeysRequest) (*issuerv1.GetSigningKeysResponse, error) {
	return &issuerv1.GetSigningKeysResponse{
		Jwks:   string(s.iss.SigningKeys()),
		Issuer: s.iss.IssuerName(),
		MaxTtl: durationpb.New(s.iss.MaxTTL()),
	}, nil
}

// toProto is a credential's metadata. The token has no field in it: only
// the issue and exchange responses carry one.
func toProto(c *issuer.Credential) *issuerv1.Credential {
	return &issuerv1.Credential{
		Id:              c.ID,
		IssueTime:       timestamppb.New(c.IssuedAt),
		ExpireTime:      timestamppb.New(c.ExpiresAt),
		Scopes:          c.Scopes,
		AgentId:         c.Agent.GetId(),
		DelegatorId:     c.Delegator.GetId(),
		TaskId:          c.Task.GetId(),
		Audience:        c.Audience,
		TaskPurpose:     c.Task.GetPurpose(),
		TaskSensitivity: c.Task.GetSensitivity(),
		Profile:         c.Profile,
		PolicyVersion:   c.PolicyVersion,
		Issuer:          c.Issuer,
		AgentClass:      c.Agent.GetClass(),
		ParentId:        c.ParentID,
		AgentChain:      c.AgentChain(),
		MaxUses:         int32(min(c.MaxUses, math.MaxInt32)),
		Uses:            int32(min(c.Uses, math.MaxInt32)),
		CnfJkt:          c.CnfJKT,
		Owner:           c.Owner,
		AssertedBy:      c.AssertedBy,
	}
}

// authenticated returns the authenticated caller of the call; a server
// that authenticates nobody (plaintext, no authenticator) has none, and
// the methods that are authorized by caller fail closed.
func authenticated(ctx context.Context) (string, error) {
	caller, ok := grpcserver.Caller(ctx)
	if !ok {
		return "", statusreason.Error(codes.Unauthenticated,
			"no authenticated caller: this method is authorized by caller; call over mTLS with a client certificate",
			statusreason.Unauthenticated, nil)
	}
	return caller, nil
}

// toStatus maps a domain error to the status sent to the caller, each with
// an ErrorInfo whose reason (package statusreason) tells the cases apart.
// Causes the caller cannot act on (store and policy failures, bugs) are
// logged, not sent.
//
//	*reqrules.Error        INVALID_ARGUMENT     INVALID_REQUEST; BadRequest lists every field
//	*InvalidArgumentError  INVALID_ARGUMENT     INVALID_REQUEST; BadRequest (policy's too)
//	ErrUnauthenticated     UNAUTHENTICATED      UNAUTHENTICATED; no caller
//	*SubjectTokenError     UNAUTHENTICATED      SUBJECT_TOKEN_INVALID; what failed, never the token
//	ErrIdentityProviderUnavailable  UNAVAILABLE  IDENTITY_PROVIDER_UNAVAILABLE; the token was not judged
//	ErrDelegatorUnproven   UNAUTHENTICATED      DELEGATOR_UNPROVEN; a denial: send the subject token
//	*DeniedError           PERMISSION_DENIED    POLICY_DENIED; reasons in the metadata
//	ErrPolicyUnavailable   UNAVAILABLE          POLICY_UNAVAILABLE; fail closed, said so
//	ErrStoreUnavailable    UNAVAILABLE          STORE_UNAVAILABLE
//	ErrCallerNotAllowed    PERMISSION_DENIED    CALLER_NOT_ALLOWED; another platform's credential or task
//	ErrTaskNotFound        NOT_FOUND            TASK_NOT_FOUND
//	*QuotaError            RESOURCE_EXHAUSTED   QUOTA_EXCEEDED; RetryInfo until a place frees up
//	ErrTaskCompleted       FAILED_PRECONDITION  TASK_COMPLETED
//	ErrNotDelegable        FAILED_PRECONDITION  NOT_DELEGABLE; the subject credential is bound or use-limited
//	ErrSubjectToken        UNAUTHENTICATED      SUBJECT_TOKEN_INACTIVE
//	ErrNotFound            NOT_FOUND            CREDENTIAL_NOT_FOUND
//	context ended          CANCELED / DEADLINE_EXCEEDED
//	anything else          INTERNAL             generic message
func (s *Server) toStatus(ctx context.Context, err error) error {
	var (
		rules    *reqrules.Error
		invalid  *issuer.InvalidArgumentError
		denied   *issuer.DeniedError
		quota    *issuer.QuotaError
		badToken *issuer.SubjectTokenError
	)
	switch {
	case errors.As(err, &rules):
		br := &errdetails.BadRequest{}
		for _, v := range rules.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return statusreason.Error(codes.InvalidArgument, rules.Error(), statusreason.InvalidRequest, nil, br)
	case errors.As(err, &invalid):
		br := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: invalid.Field, Description: invalid.Reason}}}
		msg := invalid.Error()
		for _, v := range invalid.More {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Reason})
			msg += "; " + v.Field + ": " + v.Reason
		}
		return statusreason.Error(codes.InvalidArgument, msg, statusreason.InvalidRequest, nil, br)
	case errors.Is(err, issuer.ErrUnauthenticated):
		return statusreason.Error(codes.Unauthenticated, "no authenticated caller: call over mTLS with a client certificate", statusreason.Unauthenticated, nil)
	case errors.As(err, &badToken):
		return statusreason.Error(codes.Unauthenticated, badToken.Error(), statusreason.SubjectTokenInvalid, nil)
	case errors.Is(err, issuer.ErrIdentityProviderUnavailable):
		s.log.WarnContext(ctx, "no credential issued: identity provider unavailable", "error", err)
		return statusreason.Error(codes.Unavailable, MsgIdentityProviderUnavailable, statusreason.IdentityProviderUnavailable, nil)
	case errors.Is(err, issuer.ErrDelegatorUnproven):
		errors.As(err, &denied)
		d := denied.Decision
		return statusreason.Error(codes.Unauthenticated,
			"delegator not proven: this platform may not assert delegators; send the delegator's subject_token from a trusted identity provider",
			statusreason.DelegatorUnproven, map[string]string{
				"reasons":        strings.Join(d.GetReasons(), "; "),
				"policy_version": d.GetPolicyVersion(),
				"decision_id":    d.GetDecisionId(),
			})
	case errors.As(err, &denied):
		d := denied.Decision
		return statusreason.Error(codes.PermissionDenied, denied.Error(), statusreason.PolicyDenied, map[string]string{
			"reasons":        strings.Join(d.GetReasons(), "; "),
			"policies":       strings.Join(d.GetPolicies(), ","),
			"policy_version": d.GetPolicyVersion(),
			"decision_id":    d.GetDecisionId(),
		})
	case errors.Is(err, issuer.ErrPolicyUnavailable):
		s.log.WarnContext(ctx, "no credential issued: policy unavailable", "error", err)
		return statusreason.Error(codes.Unavailable, MsgPolicyUnavailable, statusreason.PolicyUnavailable, nil)
	case errors.Is(err, issuer.ErrStoreUnavailable):
		s.log.WarnContext(ctx, "credential store unavailable", "error", err)
		return statusreason.Error(codes.Unavailable, MsgStoreUnavailable, statusreason.StoreUnavailable, nil)
	case errors.Is(err, issuer.ErrCallerNotAllowed):
		return statusreason.Error(codes.PermissionDenied, issuer.ErrCallerNotAllowed.Error(), statusreason.CallerNotAllowed, nil)
	case errors.Is(err, issuer.ErrTaskNotFound):
		return statusreason.Error(codes.NotFound, issuer.ErrTaskNotFound.Error(), statusreason.TaskNotFound, nil)
	case errors.As(err, &quota):
		return statusreason.Error(codes.ResourceExhausted, quota.Error(), statusreason.QuotaExceeded,
			map[string]string{"delegator_id": quota.Delegator, "quota": strconv.Itoa(quota.Quota)},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(quota.RetryAfter)})
	case errors.Is(err, issuer.ErrTaskCompleted):
		return statusreason.Error(codes.FailedPrecondition, "task already completed: no credential issued", statusreason.TaskCompleted, nil)
	case errors.Is(err, issuer.ErrNotDelegable):
		return statusreason.Error(codes.FailedPrecondition, err.Error(), statusreason.NotDelegable, nil)
	case errors.Is(err, issuer.ErrSubjectToken):
		// Checked before ErrNotFound: a parent gone during the exchange is
		// an inactive subject token, not a missing resource.
		return statusreason.Error(codes.Unauthenticated, "subject_token is not an active credential", statusreason.SubjectTokenInactive, nil)
	case errors.Is(err, issuer.ErrNotFound):
		return statusreason.Error(codes.NotFound, "credential not found or no longer live", statusreason.CredentialNotFound, nil)
	case errors.Is(err, context.Canceled):
		return statusreason.Error(codes.Canceled, "request canceled", statusreason.Canceled, nil)
	case errors.Is(err, context.DeadlineExceeded):
		return statusreason.Error(codes.DeadlineExceeded, "deadline exceeded", statusreason.DeadlineExceeded, nil)
	default:
		s.log.ErrorContext(ctx, "internal error", "error", err)
		return statusreason.Error(codes.Internal, MsgInternal, statusreason.Internal, nil)
	}
}

// pageSize coerces a requested page size as AIP-158 asks: above the
// largest page it is the largest page, not an error. Negative sizes were
// refused by reqrules; zero is the domain's default.
func pageSize(n int32) int {
	return min(int(n), issuer.MaxPageSize)
}

// requestTTL is the requested life of a credential; zero when unset (the
// domain names the missing field).
func requestTTL(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, &issuer.InvalidArgumentError{Field: "ttl", Reason: err.Error()}
	}
	return d.AsDuration(), nil
}
