package grpcapi_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/statusreason"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/testkit/testserver"
)

// refusingPolicy answers every Evaluate with INVALID_ARGUMENT and two field
// violations, as the policy service does for a request it finds invalid;
// bare, it sends the code alone, without ErrorInfo or violations.
type refusingPolicy struct {
	policyv1.UnimplementedPolicyServiceServer
	bare bool
}

func (p refusingPolicy) Evaluate(context.Context, *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	if p.bare {
		return nil, status.Error(codes.InvalidArgument, "invalid")
	}
	return nil, statusreason.Error(codes.InvalidArgument, "invalid request", statusreason.InvalidRequest, nil, &errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "delegator.time_zone", Description: "is not an IANA time zone name"},
			{Field: "agent.attributes[\"k\"]", Description: "value length must be at most 1024 bytes"},
		},
	})
}

func startRefusingPolicy(t *testing.T, p refusingPolicy) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	policyv1.RegisterPolicyServiceServer(gs, p)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func violations(err error) []string {
	var out []string
	for _, fv := range statusreason.BadRequest(err) {
		out = append(out, fv.GetField())
	}
	return out
}

func TestPolicyInvalidArgumentReachesTheCallerAsInvalidArgument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisAddr(t), startRefusingPolicy(t, refusingPolicy{}))
	_, err := e.client.IssueCredential(t.Context(), request("task-policy-refuses"))
	if status.Code(err) != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
		t.Fatalf("IssueCredential = %v (reason %q); want INVALID_ARGUMENT, %s", err, statusreason.Of(err), statusreason.InvalidRequest)
	}
	want := []string{"delegator.time_zone", "agent.attributes[\"k\"]"}
	if diff := cmp.Diff(want, violations(err)); diff != "" {
		t.Errorf("field violations (-want +got):\n%s", diff)
	}
	if keys := e.credentialKeys(t); len(keys) != 0 {
		t.Errorf("credentials stored after policy refused the request: %v", keys)
	}
}

// An INVALID_ARGUMENT from policy that names no field is not taken as the
// caller's mistake: the issuer fails closed, as for any other policy failure.
func TestPolicyInvalidArgumentWithoutViolationsFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisAddr(t), startRefusingPolicy(t, refusingPolicy{bare: true}))
	_, err := e.client.IssueCredential(t.Context(), request("task-policy-bare"))
	if status.Code(err) != codes.Unavailable || statusreason.Of(err) != statusreason.PolicyUnavailable {
		t.Fatalf("IssueCredential = %v (reason %q); want UNAVAILABLE, %s", err, statusreason.Of(err), statusreason.PolicyUnavailable)
	}
	if keys := e.credentialKeys(t); len(keys) != 0 {
		t.Errorf("credentials stored: %v", keys)
	}
}

func TestInvalidRequestReportsEveryViolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisAddr(t), startPolicy(t, allowAll))
	req := request("task-many-wrongs")
	req.Agent.Class = identityv1.AgentClass_AGENT_CLASS_UNSPECIFIED
	req.Delegator.TimeZone = "Mars/Olympus_Mons"
	req.Scopes = []string{"tickets:read", "tickets read"}
	req.Ttl = durationpb.New(time.Millisecond)
	_, err := e.client.IssueCredential(t.Context(), req)
	if status.Code(err) != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
		t.Fatalf("IssueCredential = %v; want INVALID_ARGUMENT, %s", err, statusreason.InvalidRequest)
	}
	got := map[string]bool{}
	for _, f := range violations(err) {
		got[f] = true
	}
	for _, f := range []string{"agent.class", "delegator.time_zone", "scopes[1]", "ttl"} {
		if !got[f] {
			t.Errorf("violations %v lack %s", violations(err), f)
		}
	}
}

func TestEveryErrorCarriesErrorInfoWithItsReason(t *testing.T) {
	t.Parallel()
	redisAddr := testserver.RedisAddr(t)
	e := newEnv(t, redisAddr, startPolicy(t, allowAll))
	denying := newEnv(t, redisAddr, startPolicy(t, func(*policyv1.EvaluateRequest) *identityv1.Decision {
		return &identityv1.Decision{Reasons: []string{"no"}, DecisionId: "d-no"}
	}))
	// A policy address where nothing listens: the issuer fails closed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := lis.Addr().String()
	_ = lis.Close()
	down := newEnv(t, redisAddr, downAddr)
	unproven := newEnv(t, redisAddr, startPolicy(t, func(*policyv1.EvaluateRequest) *identityv1.Decision {
		return &identityv1.Decision{DelegatorUnproven: true, Reasons: []string{"platform may not assert delegators"}, DecisionId: "d-unproven"}
	}))
	// A server that authenticates nobody: every call lacks a caller.
	anonymous := newEnvAs(t, redisAddr, startPolicy(t, allowAll), nil)

	completed := request("task-completed")
	if _, err := e.client.IssueCredential(t.Context(), completed); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CompleteTask(t.Context(), &issuerv1.CompleteTaskRequest{TaskId: completed.Task.Id}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func(ctx context.Context) error
		code   codes.Code
		reason string
	}{
		{"invalid request", func(ctx context.Context) error {
			_, err := e.client.IssueCredential(ctx, &issuerv1.IssueCredentialRequest{})
			return err
		}, codes.InvalidArgument, statusreason.InvalidRequest},
		{"denied", func(ctx context.Context) error {
			_, err := denying.client.IssueCredential(ctx, request("task-denied"))
			return err
		}, codes.PermissionDenied, statusreason.PolicyDenied},
		{"policy unavailable", func(ctx context.Context) error {
			_, err := down.client.IssueCredential(ctx, request("task-down"))
			return err
		}, codes.Unavailable, statusreason.PolicyUnavailable},
		{"no caller", func(ctx context.Context) error {
			_, err := anonymous.client.IssueCredential(ctx, request("task-anonymous"))
			return err
		}, codes.Unauthenticated, statusreason.Unauthenticated},
		{"no caller for an exchange", func(ctx context.Context) error {
			_, err := anonymous.client.ExchangeCredential(ctx, exchangeReq(&issuedCred{token: "a.b.c"}, "agent:x", "tickets:read"))
			return err
		}, codes.Unauthenticated, statusreason.Unauthenticated},
		{"delegator unproven", func(ctx context.Context) error {
			_, err := unproven.client.IssueCredential(ctx, request("task-unproven"))
			return err
		}, codes.Unauthenticated, statusreason.DelegatorUnproven},
		{"subject token with no provider trusted", func(ctx context.Context) error {
			req := request("task-token")
			req.SubjectToken, req.SubjectTokenType = "a.b.c", "urn:ietf:params:oauth:token-type:id_token"
			_, err := e.client.IssueCredential(ctx, req)
			return err
		}, codes.Unauthenticated, statusreason.SubjectTokenInvalid},
		{"task completed", func(ctx context.Context) error {
			_, err := e.client.IssueCredential(ctx, completed)
			return err
		}, codes.FailedPrecondition, statusreason.TaskCompleted},
		{"subject token inactive", func(ctx context.Context) error {
			_, err := e.client.ExchangeCredential(ctx, exchangeReq(&issuedCred{token: "a.b.c"}, "agent:x", "tickets:read"))
			return err
		}, codes.Unauthenticated, statusreason.SubjectTokenInactive},
		{"credential not found", func(ctx context.Context) error {
			_, err := e.client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
				Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: "no-such-credential"},
			})
			return err
		}, codes.NotFound, statusreason.CredentialNotFound},
		{"task never issued for", func(ctx context.Context) error {
			_, err := e.client.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: "task-never-issued"})
			return err
		}, codes.NotFound, statusreason.TaskNotFound},
		{"another platform's task", func(ctx context.Context) error {
			_, err := e.client.CompleteTask(as(ctx, platformB), &issuerv1.CompleteTaskRequest{TaskId: completed.Task.Id})
			return err
		}, codes.PermissionDenied, statusreason.CallerNotAllowed},
		{"exchange another platform's credential", func(ctx context.Context) error {
			resp, err := e.client.IssueCredential(ctx, request("task-exchanged-by-b"))
			if err != nil {
				return err
			}
			_, err = e.client.ExchangeCredential(as(ctx, platformB), exchangeReq(&issuedCred{token: resp.GetToken()}, "agent:b-sub", "tickets:read"))
			return err
		}, codes.PermissionDenied, statusreason.CallerNotAllowed},
		{"issue into another platform's task", func(ctx context.Context) error {
			_, err := e.client.IssueCredential(as(ctx, platformB), completed)
			return err
		}, codes.PermissionDenied, statusreason.CallerNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			if status.Code(err) != tt.code || statusreason.Of(err) != tt.reason {
				t.Errorf("got %v, reason %q; want %v, %s", status.Code(err), statusreason.Of(err), tt.code, tt.reason)
			}
		})
	}
}

// AIP-158: a page size above the largest page is served at the largest
// page; only a negative one is refused.
func TestListPageSizeAboveMaxIsCoerced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testserver.RedisAddr(t), startPolicy(t, allowAll))
	sel := &issuerv1.ListCredentialsRequest_TaskId{TaskId: "task-page"}
	if _, err := e.client.IssueCredential(t.Context(), request("task-page")); err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.ListCredentials(t.Context(), &issuerv1.ListCredentialsRequest{Selector: sel, PageSize: 5000})
	if err != nil || len(resp.GetCredentials()) != 1 {
		t.Errorf("ListCredentials(page_size 5000) = %v, %v; want the one credential", resp, err)
	}
	_, err = e.client.ListCredentials(t.Context(), &issuerv1.ListCredentialsRequest{Selector: sel, PageSize: -1})
	if status.Code(err) != codes.InvalidArgument || !cmp.Equal(violations(err), []string{"page_size"}) {
		t.Errorf("ListCredentials(page_size -1) = %v, violations %v; want INVALID_ARGUMENT on page_size", err, violations(err))
	}
}
