package grpcapi_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/pkg/grpcserver"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/grpcapi"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/policyclient"
	"github.com/jitid/jitid/services/issuer/internal/redisstore"
	"github.com/jitid/jitid/services/issuer/internal/signing"
	"github.com/jitid/jitid/testkit/grpctest"
	"github.com/jitid/jitid/testkit/testserver"
)

const (
	testIssuer    = "https://jitid.test"
	policyTimeout = 300 * time.Millisecond
)

// fakePolicy is a PolicyService answering with chosen decisions over a
// real gRPC socket. The real policy service is another module; the e2e
// tests run it.
type fakePolicy struct {
	policyv1.UnimplementedPolicyServiceServer
	decide func(*policyv1.EvaluateRequest) *identityv1.Decision
}

func (p *fakePolicy) Evaluate(_ context.Context, r *policyv1.EvaluateRequest) (*policyv1.EvaluateResponse, error) {
	return &policyv1.EvaluateResponse{Decision: p.decide(r)}, nil
}

func allowAll(r *policyv1.EvaluateRequest) *identityv1.Decision {
	return &identityv1.Decision{
		Allow: true, GrantedScopes: r.Scopes, MaxTtl: durationpb.New(15 * time.Minute),
		Profile: identityv1.Profile_PROFILE_MINIMAL, Policies: []string{"allow-medium"}, PolicyVersion: "v1", DecisionId: "d-1",
	}
}

func startPolicy(t testing.TB, decide func(*policyv1.EvaluateRequest) *identityv1.Decision) string {
	t.Helper()
	conn := grpctest.Serve(t, func(r grpc.ServiceRegistrar) {
		policyv1.RegisterPolicyServiceServer(r, &fakePolicy{decide: decide})
	})
	return conn.Target()
}

// startHangingPolicy accepts connections and never answers: a policy
// service stuck past any deadline.
func startHangingPolicy(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// testPlatform is the authenticated caller of every call of these tests,
// as the mTLS peer's SPIFFE ID would be.
const testPlatform = platformA

type env struct {
	client issuerv1.IssuerServiceClient
	rdb    *redis.Client
	store  *redisstore.Store
	prefix string
}

func newEnv(t *testing.T, redisAddr, policyAddr string) *env {
	t.Helper()
	return newEnvAs(t, redisAddr, policyAddr, testCaller)
}

// newEnvAs is newEnv whose server authenticates calls with authn; none
// (nil) leaves every call without a caller.
func newEnvAs(t *testing.T, redisAddr, policyAddr string, authn grpcserver.Authenticator) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	ns := testserver.Namespace(t)
	st := redisstore.New(rdb, redisstore.Options{Prefix: ns, Events: eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}})
	pc, err := policyclient.New(policyclient.Options{Addr: policyAddr, Timeout: policyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := signing.Load(signing.Options{Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{Issuer: testIssuer, DefaultAudience: "jitid", MaxTTL: time.Hour, Admins: []string{adminID}}, pc, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the server has stopped.
	t.Cleanup(func() {
		_ = pc.Close()
		_ = rdb.Close()
	})
	srv := grpcserver.New(grpcserver.Options{Name: "issuer", GRPCAddr: "127.0.0.1:0", Authenticate: authn})
	grpcapi.New(iss, nil).Register(srv.GRPC())
	conn := grpctest.Run(t, srv)
	return &env{client: issuerv1.NewIssuerServiceClient(conn), rdb: rdb, store: st, prefix: ns}
}

// credentialKeys returns the credential keys in Redis.
func (e *env) credentialKeys(t *testing.T) []string {
	t.Helper()
	keys, err := e.rdb.Keys(context.Background(), e.prefix+":*:cred:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// events returns the outbox events, by type.
func (e *env) events(t *testing.T) map[eventsv1.EventType][]*eventsv1.LifecycleEvent {
	t.Helper()
	out := map[eventsv1.EventType][]*eventsv1.LifecycleEvent{}
	for _, key := range e.store.OutboxKeys() {
		msgs, err := e.rdb.XRange(context.Background(), key, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			ev, err := eventbus.Decode([]byte(m.Values["data"].(string)))
			if err != nil {
				t.Fatal(err)
			}
			out[ev.GetType()] = append(out[ev.GetType()], ev)
		}
	}
	return out
}

func (e *env) assertNothingWritten(t *testing.T) {
	t.Helper()
	if keys, err := e.rdb.Keys(context.Background(), e.prefix+":*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("Redis holds %v (err %v); want nothing", keys, err)
	}
}

func request(taskID string) *issuerv1.IssueCredentialRequest {
	return &issuerv1.IssueCredentialRequest{
		Agent:     &identityv1.Agent{Id: "agent:research-7f3a", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
		Delegator: &identityv1.Delegator{Id: "user:alice@example.com"},
		Task:      &identityv1.Task{Id: taskID, Purpose: "book tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM},
		Scopes:    []string{"tickets:read", "tickets:hold"},
		Ttl:       durationpb.New(30 * time.Minute),
		Audience:  "tickets-api",
	}
}

func TestIssuerService(t *testing.T) {
	t.Parallel()
	redisAddr := testserver.RedisAddr(t)
	allowAddr := startPolicy(t, allowAll)

	t.Run("issue, verify with the JWKS, introspect, revoke", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, redisAddr, allowAddr)
		ctx := t.Context()
		req := request("task-issue")
		resp, err := e.client.IssueCredential(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		cred, token := resp.GetCredential(), resp.GetToken()
		if token == "" || cred.GetId() == "" {
			t.Fatalf("credential = %v", cred)
		}
		if life := cred.GetExpireTime().AsTime().Sub(cred.GetIssueTime().AsTime()); life != 15*time.Minute {
			t.Errorf("credential lives %v, want policy's 15m", life)
		}

		keys, err := e.client.GetSigningKeys(ctx, &issuerv1.GetSigningKeysRequest{})
		if err != nil {
			t.Fatal(err)
		}
		jwks, err := credverify.NewStaticKeys([]byte(keys.GetJwks()))
		if err != nil {
			t.Fatal(err)
		}
		v, err := credverify.New(credverify.Options{Issuer: keys.GetIssuer(), Audience: "tickets-api", Keys: jwks})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := v.Verify(ctx, token, "tickets:read", "tickets:hold")
		if err != nil {
			t.Fatalf("verify with the JWKS: %v", err)
		}
		if claims.Delegator() != req.Delegator.Id || claims.Agent() != req.Agent.Id || claims.ClientID != req.Agent.Id ||
			claims.Task.ID != req.Task.Id || claims.Task.Sensitivity != "MEDIUM" || claims.ID != cred.GetId() {
			t.Errorf("claims = %+v", claims)
		}

		// Redis holds it with a TTL; the outbox holds its issued event.
		credKeys := e.credentialKeys(t)
		if len(credKeys) != 1 {
			t.Fatalf("credential keys = %v", credKeys)
		}
		if ttl, err := e.rdb.PTTL(ctx, credKeys[0]).Result(); err != nil || ttl <= 0 || ttl > 15*time.Minute {
			t.Errorf("credential key TTL = %v, %v", ttl, err)
		}
		if evs := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED]; len(evs) != 1 || evs[0].GetCredentialId() != cred.GetId() {
			t.Errorf("issued events = %v", evs)
		}

		in, err := e.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		want := proto(cred)
		if diff := cmp.Diff(&issuerv1.IntrospectCredentialResponse{Active: true, Credential: want}, in, protocmp.Transform()); diff != "" {
			t.Errorf("introspection (-want +got):\n%s", diff)
		}

		list, err := e.client.ListCredentials(ctx, &issuerv1.ListCredentialsRequest{Selector: &issuerv1.ListCredentialsRequest_TaskId{TaskId: "task-issue"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetCredentials()) != 1 || carriesToken(t, list, token) || list.GetCredentials()[0].GetId() != cred.GetId() {
			t.Errorf("list = %v", list)
		}

		rev, err := e.client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: cred.GetId()}, Reason: "leaked",
		})
		if err != nil || rev.GetRevoked() != 1 {
			t.Fatalf("revoke = %v, %v", rev, err)
		}
		in, err = e.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: token})
		if err != nil || in.GetActive() {
			t.Errorf("introspect after revoke = %v, %v; want inactive", in, err)
		}
		if evs := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED]; len(evs) != 1 || evs[0].GetReason() != "leaked" ||
			evs[0].GetDelegator().GetId() != req.Delegator.Id {
			t.Errorf("revoked events = %v", evs)
		}
		_, err = e.client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: cred.GetId()},
		})
		if status.Code(err) != codes.NotFound {
			t.Errorf("revoke again: %v, want NOT_FOUND", err)
		}
	})

	t.Run("revoke by task, agent, delegator", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name string
			sel  func(r *issuerv1.IssueCredentialRequest) *issuerv1.RevokeCredentialsRequest
		}{
			{"task", func(r *issuerv1.IssueCredentialRequest) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_TaskId{TaskId: r.Task.Id}}
			}},
			{"agent", func(r *issuerv1.IssueCredentialRequest) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_AgentId{AgentId: r.Agent.Id}}
			}},
			{"delegator", func(r *issuerv1.IssueCredentialRequest) *issuerv1.RevokeCredentialsRequest {
				return &issuerv1.RevokeCredentialsRequest{Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: r.Delegator.Id}}
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, redisAddr, allowAddr)
				ctx := t.Context()
				req := request("task-" + tt.name)
				var tokens []string
				for range 2 {
					resp, err := e.client.IssueCredential(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					tokens = append(tokens, resp.GetToken())
				}
				rev, err := e.client.RevokeCredentials(ctx, tt.sel(req))
				if err != nil || rev.GetRevoked() != 2 {
					t.Fatalf("revoke = %v, %v", rev, err)
				}
				for _, tok := range tokens {
					if in, err := e.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: tok}); err != nil || in.GetActive() {
						t.Errorf("introspect = %v, %v; want inactive", in, err)
					}
				}
				if n := len(e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED]); n != 2 {
					t.Errorf("%d revoked events, want 2", n)
				}
				if keys := e.credentialKeys(t); len(keys) != 0 {
					t.Errorf("credential keys left: %v", keys)
				}
			})
		}
	})

	t.Run("complete task", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, redisAddr, allowAddr)
		ctx := t.Context()
		resp, err := e.client.IssueCredential(ctx, request("task-done"))
		if err != nil {
			t.Fatal(err)
		}
		done, err := e.client.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: "task-done", Reason: "summary delivered"})
		if err != nil || done.GetRevoked() != 1 {
			t.Fatalf("complete = %v, %v", done, err)
		}
		if in, err := e.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: resp.GetToken()}); err != nil || in.GetActive() {
			t.Errorf("introspect = %v, %v; want inactive", in, err)
		}
		completed := e.events(t)[eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED]
		if len(completed) != 1 || completed[0].GetReason() != "summary delivered" ||
			!cmp.Equal(completed[0].GetCredentialIds(), []string{resp.GetCredential().GetId()}) {
			t.Errorf("task completed events = %v; want one naming the credential revoked", completed)
		}
		_, err = e.client.IssueCredential(ctx, request("task-done"))
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("issue for a completed task: %v, want FAILED_PRECONDITION", err)
		}
	})

	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		addr := startPolicy(t, func(*policyv1.EvaluateRequest) *identityv1.Decision {
			return &identityv1.Decision{Reasons: []string{"CRITICAL tasks need human approval"}, PolicyVersion: "v1", DecisionId: "d-2"}
		})
		e := newEnv(t, redisAddr, addr)
		_, err := e.client.IssueCredential(t.Context(), request("task-denied"))
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied {
			t.Fatalf("issue: %v, want PERMISSION_DENIED", err)
		}
		if !strings.Contains(st.Message(), "CRITICAL tasks need human approval") {
			t.Errorf("message %q does not carry the reason", st.Message())
		}
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info.GetReason() != "POLICY_DENIED" || info.GetMetadata()["reasons"] != "CRITICAL tasks need human approval" {
			t.Errorf("ErrorInfo = %v", info)
		}
		if keys := e.credentialKeys(t); len(keys) != 0 {
			t.Errorf("credential keys after a denial: %v", keys)
		}
		evs := e.events(t)
		if len(evs) != 1 || len(evs[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED]) != 1 {
			t.Errorf("events = %v; want one denied event", evs)
		}
	})

	t.Run("policy unavailable", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name string
			addr func(t *testing.T) string
		}{
			{"down", func(t *testing.T) string { return testserver.ClosedAddr(t) }},
			{"hanging past the deadline", startHangingPolicy},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, redisAddr, tt.addr(t))
				start := time.Now()
				_, err := e.client.IssueCredential(t.Context(), request("task-unavailable"))
				if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != grpcapi.MsgPolicyUnavailable {
					t.Errorf("issue: %v, want UNAVAILABLE (fail closed)", err)
				}
				if d := time.Since(start); d > policyTimeout+2*time.Second {
					t.Errorf("refusal took %v; the policy deadline is %v", d, policyTimeout)
				}
				e.assertNothingWritten(t)
			})
		}
	})

	t.Run("invalid argument", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, redisAddr, allowAddr)
		for _, tt := range []struct {
			name   string
			modify func(r *issuerv1.IssueCredentialRequest)
			field  string
		}{
			{"no agent id", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Id = "" }, "agent.id"},
			{"unknown class", func(r *issuerv1.IssueCredentialRequest) { r.Agent.Class = 7 }, "agent.class"},
			{"no delegator", func(r *issuerv1.IssueCredentialRequest) { r.Delegator = nil }, "delegator"},
			{"no sensitivity", func(r *issuerv1.IssueCredentialRequest) { r.Task.Sensitivity = 0 }, "task.sensitivity"},
			{"past deadline", func(r *issuerv1.IssueCredentialRequest) {
				r.Task.DeadlineTime = timestamppb.New(time.Now().Add(-time.Minute))
			}, "task.deadline_time"},
			{"empty scopes", func(r *issuerv1.IssueCredentialRequest) { r.Scopes = nil }, "scopes"},
			{"no ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = nil }, "ttl"},
			{"zero ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = durationpb.New(0) }, "ttl"},
			{"negative ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = durationpb.New(-time.Second) }, "ttl"},
			{"malformed ttl", func(r *issuerv1.IssueCredentialRequest) { r.Ttl = &durationpb.Duration{Seconds: 1, Nanos: -1} }, "ttl"},
			{"oversized purpose", func(r *issuerv1.IssueCredentialRequest) { r.Task.Purpose = strings.Repeat("p", 2000) }, "task.purpose"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				req := request("task-invalid")
				tt.modify(req)
				_, err := e.client.IssueCredential(t.Context(), req)
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument {
					t.Fatalf("issue: %v, want INVALID_ARGUMENT", err)
				}
				var field string
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
						field = br.GetFieldViolations()[0].GetField()
					}
				}
				if field != tt.field {
					t.Errorf("field violation %q, want %q", field, tt.field)
				}
			})
		}
		_, err := e.client.RevokeCredentials(t.Context(), &issuerv1.RevokeCredentialsRequest{Reason: "no selector"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("revoke without a selector: %v, want INVALID_ARGUMENT", err)
		}
		_, err = e.client.ListCredentials(t.Context(), &issuerv1.ListCredentialsRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("list without a selector: %v, want INVALID_ARGUMENT", err)
		}
		_, err = e.client.CompleteTask(t.Context(), &issuerv1.CompleteTaskRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("complete without a task: %v, want INVALID_ARGUMENT", err)
		}
		e.assertNothingWritten(t)
	})

	t.Run("introspect forged and malformed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, redisAddr, allowAddr)
		other := newEnv(t, redisAddr, allowAddr)
		forged, err := other.client.IssueCredential(t.Context(), request("task-forged"))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{"", "x", "a.b.c", forged.GetToken(), strings.Repeat("a", 9000)} {
			in, err := e.client.IntrospectCredential(t.Context(), &issuerv1.IntrospectCredentialRequest{Token: tok})
			if err != nil || in.GetActive() || in.GetCredential() != nil {
				t.Errorf("introspect(%.10q) = %v, %v; want inactive", tok, in, err)
			}
		}
	})
}

// carriesToken reports whether m holds token anywhere in its wire form.
func carriesToken(t testing.TB, m protov2.Message, token string) bool {
	t.Helper()
	b, err := protov2.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return bytes.Contains(b, []byte(token))
}

func proto(c *issuerv1.Credential) *issuerv1.Credential {
	return &issuerv1.Credential{
		Id: c.Id, IssueTime: c.IssueTime, ExpireTime: c.ExpireTime, Scopes: c.Scopes,
		AgentId: c.AgentId, DelegatorId: c.DelegatorId, TaskId: c.TaskId, Audience: c.Audience,
		TaskPurpose: c.TaskPurpose, TaskSensitivity: c.TaskSensitivity, Profile: c.Profile,
		PolicyVersion: c.PolicyVersion, Issuer: c.Issuer, AgentClass: c.AgentClass,
		Owner: c.Owner, AssertedBy: c.AssertedBy,
	}
}
