package grpcapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

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

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// recorder is a policy that allows what is asked (capped by maxUses) and
// keeps every request it saw.
type recorder struct {
	mu      sync.Mutex
	seen    []*policyv1.EvaluateRequest
	maxUses int32
}

func (r *recorder) decide(req *policyv1.EvaluateRequest) *identityv1.Decision {
	r.mu.Lock()
	r.seen = append(r.seen, req)
	r.mu.Unlock()
	d := allowAll(req)
	d.MaxUses = r.maxUses
	return d
}

func (r *recorder) last() *policyv1.EvaluateRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[len(r.seen)-1]
}

type fullEnv struct {
	*env
	keys *signing.KeySet
	key  *ecdsa.PrivateKey
}

// newFullEnv is newEnv with a known signing key and a chain depth.
func newFullEnv(t testing.TB, redisAddr, policyAddr string, depth int) *fullEnv {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	ns := testserver.Namespace(t)
	st := redisstore.New(rdb, redisstore.Options{Prefix: ns, Events: eventbus.Config{Stream: ns, SubjectPrefix: ns + ".events"}})
	pc, err := policyclient.New(policyclient.Options{Addr: policyAddr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := signing.New(signing.Options{Issuer: testIssuer}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{Issuer: testIssuer, DefaultAudience: "jitid", MaxTTL: time.Hour, MaxChainDepth: depth, Admins: []string{adminID}}, pc, st, keys)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the server has stopped.
	t.Cleanup(func() {
		_ = pc.Close()
		_ = rdb.Close()
	})
	srv := grpcserver.New(grpcserver.Options{Name: "issuer", GRPCAddr: "127.0.0.1:0", Authenticate: testCaller})
	grpcapi.New(iss, nil).Register(srv.GRPC())
	conn := grpctest.Run(t, srv)
	return &fullEnv{env: &env{client: issuerv1.NewIssuerServiceClient(conn), rdb: rdb, store: st, prefix: ns}, keys: keys, key: key}
}

func (e *fullEnv) introspect(t testing.TB, token string) *issuerv1.IntrospectCredentialResponse {
	t.Helper()
	in, err := e.client.IntrospectCredential(context.Background(), &issuerv1.IntrospectCredentialRequest{Token: token})
	if err != nil {
		t.Fatalf("introspect: %v", err)
	}
	return in
}

func (e *fullEnv) issue(t testing.TB, req *issuerv1.IssueCredentialRequest) *issuedCred {
	t.Helper()
	resp, err := e.client.IssueCredential(context.Background(), req)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return &issuedCred{Credential: resp.GetCredential(), token: resp.GetToken()}
}

// issuedCred is a credential with the token its issue response carried
// (the Credential message never carries one).
type issuedCred struct {
	*issuerv1.Credential
	token string
}

// GetToken returns the signed token.
func (c *issuedCred) GetToken() string { return c.token }

// tokenHolder is a response or credential that carries a token.
type tokenHolder interface{ GetToken() string }

func exchangeReq(parent tokenHolder, agent string, scopes ...string) *issuerv1.ExchangeCredentialRequest {
	return &issuerv1.ExchangeCredentialRequest{
		SubjectToken: parent.GetToken(),
		Agent:        &identityv1.Agent{Id: agent, Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
		Scopes:       scopes,
		Ttl:          durationpb.New(5 * time.Minute),
	}
}

func b64json(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestIntrospectionRefuses: every kind of bad token is inactive, and none
// is an error.
func TestIntrospectionRefuses(t *testing.T) {
	t.Parallel()
	e := newFullEnv(t, testserver.RedisAddr(t), startPolicy(t, allowAll), 0)
	good := e.issue(t, request("task-refuse"))
	if !e.introspect(t, good.GetToken()).GetActive() {
		t.Fatal("the genuine token is inactive")
	}
	kid := e.keys.SigningKeyID()
	parts := strings.Split(good.GetToken(), ".")

	// The stored credential, re-signed by the issuer's own key with one
	// thing changed.
	stored := func(mod func(c *issuer.Credential)) string {
		c := &issuer.Credential{
			ID: good.GetId(), Issuer: testIssuer, Audience: good.GetAudience(),
			Agent: &identityv1.Agent{Id: good.GetAgentId()}, Delegator: &identityv1.Delegator{Id: good.GetDelegatorId()},
			Task:   &identityv1.Task{Id: good.GetTaskId(), Sensitivity: good.GetTaskSensitivity()},
			Scopes: good.GetScopes(), IssuedAt: good.GetIssueTime().AsTime(), ExpiresAt: good.GetExpireTime().AsTime(),
		}
		mod(c)
		tok, err := e.keys.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	signWith := func(alg jose.SignatureAlgorithm, key any, typ string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		if err := json.Unmarshal(raw, &claims); err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	otherIssuer, _ := signing.New(signing.Options{Issuer: "https://evil.example"}, e.key)
	wrongIss, err := otherIssuer.Sign(&issuer.Credential{
		ID: good.GetId(), Issuer: "https://evil.example", Audience: good.GetAudience(),
		Agent: &identityv1.Agent{Id: good.GetAgentId()}, Delegator: &identityv1.Delegator{Id: good.GetDelegatorId()},
		Task: &identityv1.Task{Id: good.GetTaskId()}, Scopes: good.GetScopes(),
		IssuedAt: good.GetIssueTime().AsTime(), ExpiresAt: good.GetExpireTime().AsTime(),
	})
	if err != nil {
		t.Fatal(err)
	}
	strangerKeys, _ := signing.New(signing.Options{Issuer: testIssuer}, otherKey)
	unknownKid, err := strangerKeys.Sign(&issuer.Credential{
		ID: good.GetId(), Issuer: testIssuer, Audience: good.GetAudience(),
		Agent: &identityv1.Agent{Id: good.GetAgentId()}, Delegator: &identityv1.Delegator{Id: good.GetDelegatorId()},
		Task: &identityv1.Task{Id: good.GetTaskId()}, Scopes: good.GetScopes(),
		IssuedAt: good.GetIssueTime().AsTime(), ExpiresAt: good.GetExpireTime().AsTime(),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	tests := []struct{ name, token string }{
		{"forged: another key under the issuer's kid", signWith(jose.ES256, otherKey, "at+jwt")},
		{"expired", stored(func(c *issuer.Credential) {
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Minute)
		})},
		{"not yet valid", stored(func(c *issuer.Credential) { c.IssuedAt = now.Add(10 * time.Minute) })},
		{"wrong audience", stored(func(c *issuer.Credential) { c.Audience = "payments-api" })},
		{"wrong issuer", wrongIss},
		{"unknown kid", unknownKid},
		{"alg none", b64json(map[string]any{"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + parts[1] + "."},
		{"HS256 keyed with the public key", signWith(jose.HS256, pubPEM, "at+jwt")},
		{"typ not at+jwt", signWith(jose.ES256, e.key, "JWT")},
		{"tampered payload", parts[0] + "." + b64json(map[string]any{"jti": good.GetId(), "scope": "admin"}) + "." + parts[2]},
		{"truncated", good.GetToken()[:len(good.GetToken())-10]},
		{"oversized", strings.Repeat("a", credverify.MaxTokenBytes+1)},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, err := e.client.IntrospectCredential(t.Context(), &issuerv1.IntrospectCredentialRequest{Token: tt.token})
			if err != nil || in.GetActive() || in.GetCredential() != nil {
				t.Errorf("introspect = %v, %v; want inactive, no error", in, err)
			}
		})
	}
}

// claimsJSON returns a token's header and claims with the values that
// change from run to run replaced, for a golden file.
func claimsJSON(t *testing.T, token string) []byte {
	t.Helper()
	parts := strings.Split(token, ".")
	var doc struct {
		Header map[string]any `json:"header"`
		Claims map[string]any `json:"claims"`
	}
	for i, dst := range []*map[string]any{&doc.Header, &doc.Claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	doc.Header["kid"] = "(varies)"
	for _, k := range []string{"jti", "iat", "nbf", "exp"} {
		doc.Claims[k] = "(varies)"
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestExchange(t *testing.T) {
	t.Parallel()
	redisAddr := testserver.RedisAddr(t)

	t.Run("chain: nested act, narrowed scopes and life, policy sees the chain, events name parent and child", func(t *testing.T) {
		t.Parallel()
		pol := &recorder{}
		e := newFullEnv(t, redisAddr, startPolicy(t, pol.decide), 0)
		ctx := t.Context()
		root := e.issue(t, request("task-chain"))
		child, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:booker-1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		// Asks for an hour: clamped to the parent's remaining life.
		req := exchangeReq(child, "agent:payer-2", "tickets:hold")
		req.Ttl = durationpb.New(time.Hour)
		req.Sensitivity = identityv1.Sensitivity_SENSITIVITY_HIGH
		grand, err := e.client.ExchangeCredential(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		g := grand.GetCredential()
		if !g.GetExpireTime().AsTime().Equal(child.GetCredential().GetExpireTime().AsTime()) {
			t.Errorf("grandchild expires %v, want the parent's %v (TTL clamped)", g.GetExpireTime().AsTime(), child.GetCredential().GetExpireTime().AsTime())
		}
		if g.GetParentId() != child.GetCredential().GetId() || !cmp.Equal(g.GetAgentChain(), []string{"agent:booker-1", "agent:research-7f3a"}) ||
			g.GetDelegatorId() != root.GetDelegatorId() || g.GetTaskId() != root.GetTaskId() ||
			g.GetTaskSensitivity() != identityv1.Sensitivity_SENSITIVITY_HIGH {
			t.Errorf("grandchild = %v", g)
		}
		golden(t, "exchange-grandchild-claims.golden", claimsJSON(t, grand.GetToken()))

		last := pol.last()
		var chain []string
		for _, a := range last.GetAgentChain() {
			chain = append(chain, a.GetId())
		}
		if !cmp.Equal(chain, []string{"agent:booker-1", "agent:research-7f3a"}) || last.GetAgent().GetId() != "agent:payer-2" ||
			last.GetDelegator().GetId() != root.GetDelegatorId() || last.GetTask().GetId() != root.GetTaskId() ||
			len(last.GetAgentChainScopes()) != 2 || !cmp.Equal(last.GetAgentChainScopes()[0].GetScopes(), []string{"tickets:hold"}) {
			t.Errorf("policy saw %v", last)
		}
		// The sub-agent's platform is the caller that asked for it; the
		// decision's time is policy's own clock.
		if last.GetPlatform() != testPlatform || last.GetDecisionTime() != nil || last.GetDelegatorAsserted() {
			t.Errorf("policy saw platform %q, decision_time %v, delegator_asserted %v; want %q, none, false",
				last.GetPlatform(), last.GetDecisionTime(), last.GetDelegatorAsserted(), testPlatform)
		}

		in := e.introspect(t, grand.GetToken())
		if !in.GetActive() || in.GetCredential().GetParentId() != child.GetCredential().GetId() || len(in.GetCredential().GetAgentChain()) != 2 {
			t.Errorf("introspect grandchild = %v", in)
		}
		exchanged := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED]
		if len(exchanged) != 2 {
			t.Fatalf("%d exchanged events, want 2", len(exchanged))
		}
		ev := exchanged[1]
		if ev.GetCredentialId() != g.GetId() || ev.GetParentCredentialId() != child.GetCredential().GetId() ||
			!cmp.Equal(ev.GetAgentChain(), []string{"agent:booker-1", "agent:research-7f3a"}) ||
			!cmp.Equal(ev.GetRequestedScopes(), []string{"tickets:hold"}) || ev.GetRequestedTtl().AsDuration() != time.Hour ||
			ev.GetDecision() == nil {
			t.Errorf("exchanged event = %v", ev)
		}
		if issued := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED]; len(issued) != 1 ||
			!cmp.Equal(issued[0].GetRequestedScopes(), request("").Scopes) || issued[0].GetRequestedTtl().AsDuration() != 30*time.Minute {
			t.Errorf("issued events = %v", issued)
		}
	})

	t.Run("narrowing violations are denied without asking policy", func(t *testing.T) {
		t.Parallel()
		pol := &recorder{}
		e := newFullEnv(t, redisAddr, startPolicy(t, pol.decide), 2)
		ctx := t.Context()
		root := e.issue(t, request("task-narrow"))
		c1, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:c1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		c2, err := e.client.ExchangeCredential(ctx, exchangeReq(c1, "agent:c2", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		asked := len(pol.seen)
		tests := []struct {
			name string
			req  *issuerv1.ExchangeCredentialRequest
		}{
			{"scope widening", exchangeReq(root, "agent:x", "tickets:read", "tickets:purchase")},
			{"scope the parent lost in an earlier exchange", exchangeReq(c1, "agent:x", "tickets:read")},
			{"sensitivity lowered", func() *issuerv1.ExchangeCredentialRequest {
				r := exchangeReq(root, "agent:x", "tickets:read")
				r.Sensitivity = identityv1.Sensitivity_SENSITIVITY_LOW
				return r
			}()},
			{"another audience", func() *issuerv1.ExchangeCredentialRequest {
				r := exchangeReq(root, "agent:x", "tickets:read")
				r.Audience = "payments-api"
				return r
			}()},
			{"chain deeper than -max-chain-depth 2", exchangeReq(c2, "agent:c3", "tickets:hold")},
		}
		for _, tt := range tests {
			_, err := e.client.ExchangeCredential(ctx, tt.req)
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: %v, want PERMISSION_DENIED", tt.name, err)
			}
		}
		if len(pol.seen) != asked {
			t.Errorf("policy asked %d times for refused exchanges", len(pol.seen)-asked)
		}
		denied := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED]
		if len(denied) != len(tests) {
			t.Errorf("%d denied events, want %d", len(denied), len(tests))
		}
		for _, ev := range denied {
			if ev.GetParentCredentialId() == "" || len(ev.GetAgentChain()) == 0 || !slices.Contains(ev.GetDecision().GetPolicies(), issuer.DelegationPolicy) {
				t.Errorf("denied event = %v", ev)
			}
		}
		if n := len(e.credentialKeys(t)); n != 3 {
			t.Errorf("%d credentials stored, want 3", n)
		}
	})

	t.Run("subject token not active, bound or use-limited", func(t *testing.T) {
		t.Parallel()
		pol := &recorder{}
		e := newFullEnv(t, redisAddr, startPolicy(t, pol.decide), 0)
		ctx := t.Context()
		root := e.issue(t, request("task-subject"))
		if _, err := e.client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: root.GetId()},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:x", "tickets:read")); status.Code(err) != codes.Unauthenticated {
			t.Errorf("exchange of a revoked token: %v, want UNAUTHENTICATED", err)
		}
		forged := root.GetToken()[:len(root.GetToken())-4] + "AAAA"
		if _, err := e.client.ExchangeCredential(ctx, exchangeReq(&issuedCred{token: forged}, "agent:x", "tickets:read")); status.Code(err) != codes.Unauthenticated {
			t.Errorf("exchange of a forged token: %v, want UNAUTHENTICATED", err)
		}
		bound := request("task-subject-bound")
		bound.CnfJkt = newDPoPKey(t).jkt
		if _, err := e.client.ExchangeCredential(ctx, exchangeReq(e.issue(t, bound), "agent:x", "tickets:read")); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("exchange of a bound token: %v, want FAILED_PRECONDITION", err)
		}
		pol.mu.Lock()
		pol.maxUses = 1
		pol.mu.Unlock()
		if _, err := e.client.ExchangeCredential(ctx, exchangeReq(e.issue(t, request("task-subject-limited")), "agent:x", "tickets:read")); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("exchange of a use-limited token: %v, want FAILED_PRECONDITION", err)
		}
	})

	t.Run("revoking the parent revokes every descendant, one event each", func(t *testing.T) {
		t.Parallel()
		e := newFullEnv(t, redisAddr, startPolicy(t, allowAll), 0)
		ctx := t.Context()
		root := e.issue(t, request("task-cascade"))
		sibling := e.issue(t, request("task-cascade"))
		c1, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:c1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		c2, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:c2", "tickets:read"))
		if err != nil {
			t.Fatal(err)
		}
		g1, err := e.client.ExchangeCredential(ctx, exchangeReq(c1, "agent:g1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		rev, err := e.client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
			Selector: &issuerv1.RevokeCredentialsRequest_CredentialId{CredentialId: root.GetId()}, Reason: "agent misbehaved",
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{root.GetId(), c1.GetCredential().GetId(), c2.GetCredential().GetId(), g1.GetCredential().GetId()}
		if got := rev.GetCredentialIds(); !cmp.Equal(sorted(got), sorted(want)) {
			t.Errorf("revoked %v, want %v", got, want)
		}
		for _, tok := range []string{root.GetToken(), c1.GetToken(), c2.GetToken(), g1.GetToken()} {
			if e.introspect(t, tok).GetActive() {
				t.Error("a descendant of a revoked credential is still active")
			}
		}
		if !e.introspect(t, sibling.GetToken()).GetActive() {
			t.Error("a sibling of the revoked credential was revoked")
		}
		var ids []string
		for _, ev := range e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED] {
			ids = append(ids, ev.GetCredentialId())
			if ev.GetReason() != "agent misbehaved" {
				t.Errorf("revoked event reason %q", ev.GetReason())
			}
		}
		if !cmp.Equal(sorted(ids), sorted(want)) {
			t.Errorf("revoked events for %v, want one each for %v", ids, want)
		}
		// The parent is gone: nothing more can be derived from it.
		if _, err := e.client.ExchangeCredential(ctx, exchangeReq(c1, "agent:late", "tickets:hold")); status.Code(err) != codes.Unauthenticated {
			t.Errorf("exchange from a revoked parent: %v, want UNAUTHENTICATED", err)
		}
	})

	t.Run("completing the task revokes the chain", func(t *testing.T) {
		t.Parallel()
		e := newFullEnv(t, redisAddr, startPolicy(t, allowAll), 0)
		ctx := t.Context()
		root := e.issue(t, request("task-complete-chain"))
		c1, err := e.client.ExchangeCredential(ctx, exchangeReq(root, "agent:c1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		g1, err := e.client.ExchangeCredential(ctx, exchangeReq(c1, "agent:g1", "tickets:hold"))
		if err != nil {
			t.Fatal(err)
		}
		done, err := e.client.CompleteTask(ctx, &issuerv1.CompleteTaskRequest{TaskId: "task-complete-chain"})
		if err != nil {
			t.Fatal(err)
		}
		want := sorted([]string{root.GetId(), c1.GetCredential().GetId(), g1.GetCredential().GetId()})
		if !cmp.Equal(sorted(done.GetCredentialIds()), want) {
			t.Errorf("completed revoked %v, want %v", done.GetCredentialIds(), want)
		}
		if n := len(e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED]); n != 3 {
			t.Errorf("%d revoked events, want 3", n)
		}
		if keys, _ := e.rdb.Keys(ctx, e.prefix+":*:children:*").Result(); len(keys) != 0 {
			t.Errorf("children sets left: %v", keys)
		}
	})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestMaxUses(t *testing.T) {
	t.Parallel()
	redisAddr := testserver.RedisAddr(t)

	t.Run("the use past max_uses is inactive and audited", func(t *testing.T) {
		t.Parallel()
		e := newFullEnv(t, redisAddr, startPolicy(t, (&recorder{maxUses: 1}).decide), 0)
		c := e.issue(t, request("task-once"))
		if c.GetMaxUses() != 1 {
			t.Fatalf("max_uses = %d, want policy's 1", c.GetMaxUses())
		}
		first := e.introspect(t, c.GetToken())
		if !first.GetActive() || first.GetCredential().GetUses() != 1 || first.GetCredential().GetMaxUses() != 1 {
			t.Errorf("first introspection = %v", first)
		}
		if e.introspect(t, c.GetToken()).GetActive() {
			t.Error("second introspection is active; max_uses is 1")
		}
		refused := e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED]
		if len(refused) != 1 || refused[0].GetCredentialId() != c.GetId() || refused[0].GetDelegator().GetId() != c.GetDelegatorId() {
			t.Errorf("use_refused events = %v; want one for the credential", refused)
		}
	})

	t.Run("parallel presentations: exactly max_uses are active", func(t *testing.T) {
		t.Parallel()
		const maxUses, n = 3, 24
		e := newFullEnv(t, redisAddr, startPolicy(t, (&recorder{maxUses: maxUses}).decide), 0)
		c := e.issue(t, request("task-race"))
		var active atomic.Int32
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if e.introspect(t, c.GetToken()).GetActive() {
					active.Add(1)
				}
			})
		}
		wg.Wait()
		if got := active.Load(); got != maxUses {
			t.Errorf("%d of %d parallel introspections active, want exactly %d", got, n, maxUses)
		}
		if got := len(e.events(t)[eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED]); got != n-maxUses {
			t.Errorf("%d use_refused events, want %d", got, n-maxUses)
		}
	})
}

type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string
}

func newDPoPKey(t testing.TB) dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := credverify.Thumbprint(&jose.JSONWebKey{Key: &k.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{priv: k, jkt: jkt}
}

func (d dpopKey) proof(t testing.TB, method, url, token string, iat time.Time) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: d.priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(token))
	p, err := jwt.Signed(sig).Claims(map[string]any{
		"jti": "p-" + d.jkt[:8], "htm": method, "htu": url, "iat": iat.Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(sum[:]),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyBinding(t *testing.T) {
	t.Parallel()
	e := newFullEnv(t, testserver.RedisAddr(t), startPolicy(t, allowAll), 0)
	ctx := t.Context()
	holder, thief := newDPoPKey(t), newDPoPKey(t)
	req := request("task-bound")
	req.CnfJkt = holder.jkt
	c := e.issue(t, req)
	if c.GetCnfJkt() != holder.jkt {
		t.Errorf("cnf_jkt = %q", c.GetCnfJkt())
	}
	claims, err := e.keys.VerifyClaims(c.GetToken())
	if err != nil || claims.Cnf == nil || claims.Cnf.JKT != holder.jkt {
		t.Fatalf("claims cnf = %+v, %v", claims.Cnf, err)
	}
	const url = "https://tickets.example/holds"
	now := time.Now()
	tok := c.GetToken()
	tests := []struct {
		name   string
		proof  string
		method string
		active bool
	}{
		{"no proof", "", "POST", false},
		{"holder's proof", holder.proof(t, "POST", url, tok, now), "POST", true},
		{"thief's proof", thief.proof(t, "POST", url, tok, now), "POST", false},
		{"proof for another method", holder.proof(t, "GET", url, tok, now), "POST", false},
		{"proof for another token", holder.proof(t, "POST", url, "other", now), "POST", false},
		{"stale proof", holder.proof(t, "POST", url, tok, now.Add(-10*time.Minute)), "POST", false},
	}
	for _, tt := range tests {
		in, err := e.client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{
			Token: tok, DpopProof: tt.proof, HttpMethod: tt.method, HttpUri: url,
		})
		if err != nil || in.GetActive() != tt.active {
			t.Errorf("%s: introspect = %v, %v; want active %v", tt.name, in, err, tt.active)
		}
	}
	for _, bad := range []string{"short", strings.Repeat("A", 43) + "=", holder.jkt[:42] + "+"} {
		r := request("task-bound")
		r.CnfJkt = bad
		if _, err := e.client.IssueCredential(ctx, r); status.Code(err) != codes.InvalidArgument {
			t.Errorf("cnf_jkt %q: %v, want INVALID_ARGUMENT", bad, err)
		}
	}
}

// BenchmarkIntrospect measures introspection calls over a real gRPC
// socket and Redis, from parallel clients.
func BenchmarkIntrospect(b *testing.B) {
	e := newFullEnv(b, testserver.RedisAddr(b), startPolicy(b, allowAll), 0)
	tok := e.issue(b, request("task-bench")).GetToken()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			in, err := e.client.IntrospectCredential(context.Background(), &issuerv1.IntrospectCredentialRequest{Token: tok})
			if err != nil || !in.GetActive() {
				b.Errorf("introspect = %v, %v", in, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkIssue measures IssueCredential end to end in process: gRPC,
// policy over gRPC, signing and the Redis script.
func BenchmarkIssue(b *testing.B) {
	e := newFullEnv(b, testserver.RedisAddr(b), startPolicy(b, allowAll), 0)
	req := request("task-bench-issue")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.client.IssueCredential(context.Background(), req); err != nil {
				b.Errorf("issue: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
