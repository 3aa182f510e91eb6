package issuer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/signing"
)

const testIssuer = "https://jitid.test"

// Callers of the tests: two platforms, an admin and a resource server.
const (
	platformA      = "spiffe://jitid.test/platform/a"
	platformB      = "spiffe://jitid.test/platform/b"
	adminID        = "spiffe://jitid.test/admin"
	resourceServer = "spiffe://jitid.test/rs/tickets"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// policyFunc is a decider for tests; the real policy service is another
// module, exercised by the grpcapi and e2e tests.
type policyFunc func(context.Context, *policyv1.EvaluateRequest) (*identityv1.Decision, error)

func (f policyFunc) Evaluate(ctx context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
	return f(ctx, r)
}

func allow(maxTTL time.Duration) policyFunc {
	return func(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
		return &identityv1.Decision{
			Allow: true, GrantedScopes: r.Scopes, MaxTtl: durationpb.New(maxTTL),
			Profile: identityv1.Profile_PROFILE_MINIMAL, PolicyVersion: "v1", DecisionId: "d-1",
		}, nil
	}
}

// memStore records what the issuer writes. The Redis store's own tests
// (and grpcapi's, over real Redis) cover storage; here the domain's
// decisions about what to write are under test.
type memStore struct {
	mu       sync.Mutex
	creds    map[string]*issuer.Credential
	owners   map[string]string // task id → owner
	events   []*eventsv1.LifecycleEvent
	getErr   error
	issueErr error
}

func newMemStore() *memStore {
	return &memStore{creds: map[string]*issuer.Credential{}, owners: map[string]string{}}
}

func (m *memStore) Issue(_ context.Context, c *issuer.Credential, issued, expired *eventsv1.LifecycleEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.issueErr != nil {
		return m.issueErr
	}
	if o, ok := m.owners[c.Task.GetId()]; ok && o != c.Owner {
		return issuer.ErrCallerNotAllowed
	}
	m.owners[c.Task.GetId()] = c.Owner
	m.creds[c.ID] = c
	m.events = append(m.events, issued, expired)
	return nil
}

func (m *memStore) AppendEvent(_ context.Context, _ string, ev *eventsv1.LifecycleEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	return nil
}

func (m *memStore) Get(_ context.Context, id, _ string) (*issuer.Credential, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.getErr != nil {
		return nil, m.getErr
	}
	c, ok := m.creds[id]
	if !ok {
		return nil, issuer.ErrNotFound
	}
	return c, nil
}

func (m *memStore) Use(_ context.Context, id, _ string, refused *eventsv1.LifecycleEvent) (*issuer.Credential, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.creds[id]
	if !ok {
		return nil, issuer.ErrNotFound
	}
	c.Uses++
	if c.MaxUses > 0 && c.Uses > c.MaxUses {
		m.events = append(m.events, refused)
		return nil, issuer.ErrUsedUp
	}
	cp := *c
	return &cp, nil
}

func (m *memStore) List(_ context.Context, sel issuer.Selector, _ int, _ string) (issuer.Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p issuer.Page
	for _, c := range m.creds {
		if matches(c, sel) {
			p.Credentials = append(p.Credentials, c)
		}
	}
	return p, nil
}

func matches(c *issuer.Credential, sel issuer.Selector) bool {
	if sel.Owner != "" && c.Owner != sel.Owner {
		return false
	}
	switch sel.Kind {
	case issuer.ByCredential:
		return c.ID == sel.ID
	case issuer.ByTask:
		return c.Task.GetId() == sel.ID
	case issuer.ByAgent:
		return c.Agent.GetId() == sel.ID
	case issuer.ByDelegator:
		return c.Delegator.GetId() == sel.ID
	}
	return false
}

func (m *memStore) Revoke(_ context.Context, sel issuer.Selector, mk issuer.EventFunc) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, c := range m.creds {
		if matches(c, sel) {
			delete(m.creds, id)
			m.events = append(m.events, mk(c))
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (m *memStore) CompleteTask(ctx context.Context, taskID, caller string, admin bool, mk issuer.EventFunc, completed *eventsv1.LifecycleEvent) ([]string, error) {
	owner, _ := m.TaskOwner(ctx, taskID)
	switch {
	case owner == "":
		return nil, issuer.ErrTaskNotFound
	case owner != caller && !admin:
		return nil, issuer.ErrCallerNotAllowed
	}
	ids, err := m.Revoke(ctx, issuer.Selector{Kind: issuer.ByTask, ID: taskID}, mk)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, completed)
	return ids, err
}

func (m *memStore) TaskOwner(_ context.Context, taskID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owners[taskID], nil
}

func (m *memStore) snapshot() (int, []*eventsv1.LifecycleEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.creds), append([]*eventsv1.LifecycleEvent(nil), m.events...)
}

type fixture struct {
	iss    *issuer.Issuer
	store  *memStore
	keys   *signing.KeySet
	calls  *int
	callMu *sync.Mutex
}

func seqIDs() issuer.IDSource {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("id-%d", n)
	}
}

func newFixture(t *testing.T, p policyFunc, now time.Time, configure ...func(*issuer.Config)) *fixture {
	t.Helper()
	key, err := signing.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	keys, err := signing.New(signing.Options{Issuer: testIssuer, Clock: clock}, key)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: newMemStore(), keys: keys, calls: new(int), callMu: new(sync.Mutex)}
	counted := policyFunc(func(ctx context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
		f.callMu.Lock()
		*f.calls++
		f.callMu.Unlock()
		return p(ctx, r)
	})
	cfg := issuer.Config{
		Issuer: testIssuer, DefaultAudience: "jitid", MaxTTL: time.Hour, Clock: clock, NewID: seqIDs(),
	}
	for _, c := range configure {
		c(&cfg)
	}
	f.iss, err = issuer.New(cfg, counted, f.store, keys)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) policyCalls() int {
	f.callMu.Lock()
	defer f.callMu.Unlock()
	return *f.calls
}

// testPlatform is the authenticated caller of the tests' requests.
const testPlatform = platformA

func validRequest() *issuer.IssueRequest {
	return &issuer.IssueRequest{
		Agent:     &identityv1.Agent{Id: "agent:research-7f3a", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Platform: "langgraph"},
		Delegator: &identityv1.Delegator{Id: "user:alice@example.com"},
		Task: &identityv1.Task{
			Id: "task-42", Purpose: "book two tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_MEDIUM,
			DeadlineTime: timestamppb.New(t0.Add(2 * time.Hour)),
		},
		Scopes: []string{"tickets:read", "tickets:hold"},
		TTL:    10 * time.Minute,
		Caller: platformA,
	}
}

func TestIssueValidation(t *testing.T) {
	t.Parallel()
	many := func(n int, f func(i int) string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = f(i)
		}
		return s
	}
	manyAttrs := map[string]string{}
	for i := range 32 + 1 { // the proto allows 32
		manyAttrs[fmt.Sprint("k", i)] = "v"
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name   string
		modify func(r *issuer.IssueRequest)
		field  string
	}{
		{"no agent", func(r *issuer.IssueRequest) { r.Agent = nil }, "agent"},
		{"no agent id", func(r *issuer.IssueRequest) { r.Agent.Id = "" }, "agent.id"},
		{"blank agent id", func(r *issuer.IssueRequest) { r.Agent.Id = "  " }, "agent.id"},
		{"agent id too long", func(r *issuer.IssueRequest) { r.Agent.Id = long(256 + 1) }, "agent.id"},
		{"agent class unspecified", func(r *issuer.IssueRequest) { r.Agent.Class = 0 }, "agent.class"},
		{"agent class unknown", func(r *issuer.IssueRequest) { r.Agent.Class = 99 }, "agent.class"},
		{"agent platform too long", func(r *issuer.IssueRequest) { r.Agent.Platform = long(256 + 1) }, "agent.platform"},
		{"agent attributes too many", func(r *issuer.IssueRequest) { r.Agent.Attributes = manyAttrs }, "agent.attributes"},
		{"agent attribute key too long", func(r *issuer.IssueRequest) {
			r.Agent.Attributes = map[string]string{long(128 + 1): "v"}
		}, `agent.attributes["` + long(128+1) + `"]`},
		{"delegator time zone unknown", func(r *issuer.IssueRequest) { r.Delegator.TimeZone = "Europe/Atlantis" }, "delegator.time_zone"},
		{"agent attribute value too long", func(r *issuer.IssueRequest) {
			r.Agent.Attributes = map[string]string{"k": long(1024 + 1)}
		}, `agent.attributes["k"]`},
		{"no delegator", func(r *issuer.IssueRequest) { r.Delegator = nil }, "delegator"},
		{"no delegator id", func(r *issuer.IssueRequest) { r.Delegator.Id = "" }, "delegator.id"},
		{"delegator id too long", func(r *issuer.IssueRequest) { r.Delegator.Id = long(256 + 1) }, "delegator.id"},
		{"delegator attributes too many", func(r *issuer.IssueRequest) { r.Delegator.Attributes = manyAttrs }, "delegator.attributes"},
		{"delegator attribute value too long", func(r *issuer.IssueRequest) {
			r.Delegator.Attributes = map[string]string{"age_verified": long(1024 + 1)}
		}, `delegator.attributes["age_verified"]`},
		{"delegator entitlement blank", func(r *issuer.IssueRequest) { r.Delegator.Entitlements = []string{""} }, "delegator.entitlements[0]"},
		{"no task", func(r *issuer.IssueRequest) { r.Task = nil }, "task"},
		{"no task id", func(r *issuer.IssueRequest) { r.Task.Id = "" }, "task.id"},
		{"task id too long", func(r *issuer.IssueRequest) { r.Task.Id = long(256 + 1) }, "task.id"},
		{"purpose too long", func(r *issuer.IssueRequest) { r.Task.Purpose = long(1024 + 1) }, "task.purpose"},
		{"sensitivity unspecified", func(r *issuer.IssueRequest) { r.Task.Sensitivity = 0 }, "task.sensitivity"},
		{"sensitivity unknown", func(r *issuer.IssueRequest) { r.Task.Sensitivity = 42 }, "task.sensitivity"},
		{"deadline in the past", func(r *issuer.IssueRequest) { r.Task.DeadlineTime = timestamppb.New(t0.Add(-time.Second)) }, "task.deadline_time"},
		{"deadline now", func(r *issuer.IssueRequest) { r.Task.DeadlineTime = timestamppb.New(t0) }, "task.deadline_time"},
		{"deadline under a second away", func(r *issuer.IssueRequest) {
			r.Task.DeadlineTime = timestamppb.New(t0.Add(500 * time.Millisecond))
		}, "task.deadline_time"},
		{"deadline invalid", func(r *issuer.IssueRequest) { r.Task.DeadlineTime = &timestamppb.Timestamp{Nanos: -1} }, "task.deadline_time"},
		{"no scopes", func(r *issuer.IssueRequest) { r.Scopes = nil }, "scopes"},
		{"too many scopes", func(r *issuer.IssueRequest) {
			r.Scopes = many(64+1, func(i int) string { return fmt.Sprint("s", i) })
		}, "scopes"},
		{"blank scope", func(r *issuer.IssueRequest) { r.Scopes = []string{"a", " "} }, "scopes[1]"},
		{"duplicate scope", func(r *issuer.IssueRequest) { r.Scopes = []string{"a", "b", "a"} }, "scopes"},
		{"scope with a space", func(r *issuer.IssueRequest) { r.Scopes = []string{"a b"} }, "scopes[0]"},
		{"scope too long", func(r *issuer.IssueRequest) { r.Scopes = []string{long(128 + 1)} }, "scopes[0]"},
		{"no ttl", func(r *issuer.IssueRequest) { r.TTL = 0 }, "ttl"},
		{"negative ttl", func(r *issuer.IssueRequest) { r.TTL = -time.Minute }, "ttl"},
		{"ttl under a second", func(r *issuer.IssueRequest) { r.TTL = time.Millisecond }, "ttl"},
		{"audience too long", func(r *issuer.IssueRequest) { r.Audience = long(256 + 1) }, "audience"},
		{"audience with a space", func(r *issuer.IssueRequest) { r.Audience = "a b" }, "audience"},
		{"key binding", func(r *issuer.IssueRequest) { r.CnfJKT = "abc" }, "cnf_jkt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, allow(time.Hour), t0)
			r := validRequest()
			tt.modify(r)
			_, err := f.iss.Issue(t.Context(), r)
			if !errors.Is(err, issuer.ErrInvalidArgument) {
				t.Fatalf("Issue() error = %v, want ErrInvalidArgument", err)
			}
			var ia *issuer.InvalidArgumentError
			if !errors.As(err, &ia) || ia.Field != tt.field {
				t.Errorf("Issue() error field = %q, want %q", ia.Field, tt.field)
			}
			if n, evs := f.store.snapshot(); n != 0 || len(evs) != 0 {
				t.Errorf("store holds %d credentials, %d events; want none", n, len(evs))
			}
			// "deadline under a second away" is found after policy, by the
			// TTL rule; every other bad request never reaches policy.
			if tt.name != "deadline under a second away" && f.policyCalls() != 0 {
				t.Errorf("policy asked %d times; want 0", f.policyCalls())
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, allow(time.Hour), t0)
		if _, err := f.iss.Issue(t.Context(), validRequest()); err != nil {
			t.Fatalf("Issue(valid) = %v", err)
		}
	})
}

func TestIssueTTLIsTheShortestBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		requested time.Duration
		policyMax time.Duration // 0: decision without max_ttl
		deadline  time.Duration // 0: task without deadline
		want      time.Duration
	}{
		{name: "requested", requested: 5 * time.Minute, policyMax: 15 * time.Minute, deadline: 2 * time.Hour, want: 5 * time.Minute},
		{name: "policy max", requested: 30 * time.Minute, policyMax: 15 * time.Minute, deadline: 2 * time.Hour, want: 15 * time.Minute},
		{name: "task deadline", requested: 30 * time.Minute, policyMax: time.Hour, deadline: 7 * time.Minute, want: 7 * time.Minute},
		{name: "issuer max", requested: 3 * time.Hour, policyMax: 2 * time.Hour, want: time.Hour},
		{name: "no policy max", requested: 20 * time.Minute, want: 20 * time.Minute},
		{name: "no policy max, issuer max", requested: 5 * time.Hour, want: time.Hour},
		{name: "deadline with a fraction of a second", requested: time.Hour, policyMax: time.Hour, deadline: 90*time.Second + 700*time.Millisecond, want: 90 * time.Second},
		{name: "all equal", requested: time.Hour, policyMax: time.Hour, deadline: time.Hour, want: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policyFunc(func(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
				d := &identityv1.Decision{Allow: true, GrantedScopes: r.Scopes}
				if tt.policyMax > 0 {
					d.MaxTtl = durationpb.New(tt.policyMax)
				}
				return d, nil
			})
			f := newFixture(t, p, t0)
			r := validRequest()
			r.TTL = tt.requested
			r.Task.DeadlineTime = nil
			if tt.deadline > 0 {
				r.Task.DeadlineTime = timestamppb.New(t0.Add(tt.deadline))
			}
			got, err := f.iss.Issue(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			if life := got.Credential.ExpiresAt.Sub(got.Credential.IssuedAt); life != tt.want {
				t.Errorf("credential lives %v, want %v", life, tt.want)
			}
			claims, err := f.keys.VerifyClaims(got.Token)
			if err != nil {
				t.Fatal(err)
			}
			if !claims.Expiry.Time().Equal(got.Credential.ExpiresAt) {
				t.Errorf("token exp %v, credential expires %v", claims.Expiry.Time(), got.Credential.ExpiresAt)
			}
		})
	}
}

func TestIssueFailsClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy policyFunc
	}{
		{"policy error", func(context.Context, *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
			return nil, errors.New("connection refused")
		}},
		{"policy past its deadline", func(ctx context.Context, _ *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
			ctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			defer cancel()
			<-ctx.Done()
			return nil, ctx.Err()
		}},
		{"no decision", func(context.Context, *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
			return nil, nil
		}},
		{"allow with a negative max_ttl", func(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
			return &identityv1.Decision{Allow: true, GrantedScopes: r.Scopes, MaxTtl: durationpb.New(-time.Minute)}, nil
		}},
		{"allow with an error too", func(_ context.Context, r *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
			return &identityv1.Decision{Allow: true, GrantedScopes: r.Scopes}, errors.New("partial failure")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.policy, t0)
			got, err := f.iss.Issue(t.Context(), validRequest())
			if !errors.Is(err, issuer.ErrPolicyUnavailable) || got != nil {
				t.Fatalf("Issue() = %v, %v; want nil, ErrPolicyUnavailable", got, err)
			}
			if n, evs := f.store.snapshot(); n != 0 || len(evs) != 0 {
				t.Errorf("store holds %d credentials, %d events; want none", n, len(evs))
			}
		})
	}
}

func TestIssueDenied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		policy      policyFunc
		wantReasons []string
	}{
		{
			name: "deny",
			policy: func(context.Context, *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
				return &identityv1.Decision{Reasons: []string{"needs human approval"}, DecisionId: "d-9"}, nil
			},
			wantReasons: []string{"needs human approval"},
		},
		{
			name: "allow with no requested scope",
			policy: func(context.Context, *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
				return &identityv1.Decision{Allow: true, GrantedScopes: []string{"admin:everything"}}, nil
			},
			wantReasons: []string{"no requested scope was granted"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.policy, t0)
			r := validRequest()
			_, err := f.iss.Issue(t.Context(), r)
			var denied *issuer.DeniedError
			if !errors.Is(err, issuer.ErrDenied) || !errors.As(err, &denied) {
				t.Fatalf("Issue() error = %v, want ErrDenied", err)
			}
			if diff := cmp.Diff(tt.wantReasons, denied.Reasons()); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			n, evs := f.store.snapshot()
			if n != 0 {
				t.Errorf("%d credentials stored after a denial", n)
			}
			want := []*eventsv1.LifecycleEvent{{
				Id: "id-1", Type: eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED, Time: timestamppb.New(t0),
				Agent: r.Agent, Delegator: r.Delegator, Task: r.Task, Scopes: r.Scopes, Audience: "jitid",
				Decision: denied.Decision, Issuer: testIssuer, Caller: platformA,
				RequestedScopes: r.Scopes, RequestedTtl: durationpb.New(r.TTL),
			}}
			if diff := cmp.Diff(want, evs, protocmp.Transform()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	t.Parallel()
	p := policyFunc(func(_ context.Context, _ *policyv1.EvaluateRequest) (*identityv1.Decision, error) {
		// Grants one of the two scopes and one never asked for.
		return &identityv1.Decision{
			Allow: true, GrantedScopes: []string{"tickets:hold", "admin:all"}, MaxTtl: durationpb.New(15 * time.Minute),
			Profile: identityv1.Profile_PROFILE_MINIMAL, PolicyVersion: "v1", DecisionId: "d-1",
		}, nil
	})
	now := t0.Add(300 * time.Millisecond)
	f := newFixture(t, p, now)
	r := validRequest()
	r.Audience = "tickets-api"
	got, err := f.iss.Issue(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	wantCred := &issuer.Credential{
		ID: "id-1", Issuer: testIssuer, Audience: "tickets-api",
		Agent: r.Agent, Delegator: r.Delegator, Task: r.Task,
		Scopes: []string{"tickets:hold"}, IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
		Profile: identityv1.Profile_PROFILE_MINIMAL, PolicyVersion: "v1", DecisionID: "d-1",
		Owner:      platformA,
		AssertedBy: testPlatform,
	}
	if diff := cmp.Diff(wantCred, got.Credential, protocmp.Transform()); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	claims, err := f.keys.VerifyClaims(got.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ID != "id-1" || claims.Subject != r.Delegator.Id || claims.Agent() != r.Agent.Id ||
		claims.Scope != "tickets:hold" || claims.Task.ID != "task-42" {
		t.Errorf("claims = %+v", claims)
	}

	n, evs := f.store.snapshot()
	if n != 1 {
		t.Errorf("%d credentials stored, want 1", n)
	}
	base := func(id string, typ eventsv1.EventType, at time.Time) *eventsv1.LifecycleEvent {
		return &eventsv1.LifecycleEvent{
			Id: id, Type: typ, Time: timestamppb.New(at), CredentialId: "id-1",
			Agent: r.Agent, Delegator: r.Delegator, Task: r.Task, Scopes: []string{"tickets:hold"},
			Audience: "tickets-api", IssueTime: timestamppb.New(t0), ExpireTime: timestamppb.New(t0.Add(10 * time.Minute)),
			Issuer: testIssuer, Owner: platformA, AssertedBy: platformA,
		}
	}
	// Every event names its caller: the platform for the issuance, the
	// issuer itself for the expiry.
	issued := base("id-2", eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, now)
	issued.Caller = platformA
	issued.Decision = got.Decision
	issued.RequestedScopes = r.Scopes
	issued.RequestedTtl = durationpb.New(r.TTL)
	expired := base("id-3", eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, t0.Add(10*time.Minute))
	expired.Reason = "expired"
	expired.Caller = issuer.DefaultSelf
	if diff := cmp.Diff([]*eventsv1.LifecycleEvent{issued, expired}, evs, protocmp.Transform()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	assertNoToken(t, got.Token, evs)

	// The request is not aliased: changing it later changes nothing stored.
	r.Agent.Id = "someone-else"
	if c, _ := f.store.Get(t.Context(), "id-1", ""); c.Agent.GetId() != "agent:research-7f3a" {
		t.Errorf("stored credential changed with the request: agent %q", c.Agent.GetId())
	}
}

func TestIssueStoreErrors(t *testing.T) {
	t.Parallel()
	for _, want := range []error{issuer.ErrTaskCompleted, issuer.ErrStoreUnavailable} {
		t.Run(want.Error(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, allow(time.Hour), t0)
			f.store.issueErr = want
			if _, err := f.iss.Issue(t.Context(), validRequest()); !errors.Is(err, want) {
				t.Errorf("Issue() error = %v, want %v", err, want)
			}
		})
	}
}

func assertNoToken(t *testing.T, token string, evs []*eventsv1.LifecycleEvent) {
	t.Helper()
	sig := token[strings.LastIndex(token, ".")+1:]
	for _, ev := range evs {
		if s := prototext.Format(ev); strings.Contains(s, token) || strings.Contains(s, sig) {
			t.Errorf("event %s carries the token", ev.Id)
		}
	}
}

func TestIntrospect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, allow(time.Hour), t0)
	issued, err := f.iss.Issue(t.Context(), validRequest())
	if err != nil {
		t.Fatal(err)
	}
	forger := newFixture(t, allow(time.Hour), t0)
	forged, err := forger.iss.Issue(t.Context(), validRequest())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		token  string
		active bool
	}{
		{"active", issued.Token, true},
		{"empty", "", false},
		{"garbage", "abc.def.ghi", false},
		{"signed by another key", forged.Token, false},
		{"truncated", issued.Token[:len(issued.Token)-4], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := f.iss.Introspect(t.Context(), platformA, tt.token, issuer.Proof{})
			if err != nil {
				t.Fatal(err)
			}
			if (c != nil) != tt.active {
				t.Errorf("Introspect() active = %v, want %v", c != nil, tt.active)
			}
		})
	}

	t.Run("revoked", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, allow(time.Hour), t0)
		got, err := f.iss.Issue(t.Context(), validRequest())
		if err != nil {
			t.Fatal(err)
		}
		ids, err := f.iss.Revoke(t.Context(), platformA, issuer.Selector{Kind: issuer.ByCredential, ID: got.Credential.ID}, "leaked")
		if err != nil || len(ids) != 1 {
			t.Fatalf("Revoke() = %v, %v", ids, err)
		}
		if c, err := f.iss.Introspect(t.Context(), platformA, got.Token, issuer.Proof{}); c != nil || err != nil {
			t.Errorf("Introspect(revoked) = %v, %v; want inactive", c, err)
		}
		_, evs := f.store.snapshot()
		last := evs[len(evs)-1]
		if last.Type != eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED || last.Reason != "leaked" ||
			last.CredentialId != got.Credential.ID || last.Delegator.GetId() != "user:alice@example.com" {
			t.Errorf("revoked event = %v", last)
		}
		if _, err := f.iss.Revoke(t.Context(), platformA, issuer.Selector{Kind: issuer.ByCredential, ID: got.Credential.ID}, ""); !errors.Is(err, issuer.ErrNotFound) {
			t.Errorf("second Revoke() error = %v, want ErrNotFound", err)
		}
	})

	t.Run("store unavailable", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, allow(time.Hour), t0)
		got, err := f.iss.Issue(t.Context(), validRequest())
		if err != nil {
			t.Fatal(err)
		}
		f.store.mu.Lock()
		f.store.getErr = issuer.ErrStoreUnavailable
		f.store.mu.Unlock()
		if _, err := f.iss.Introspect(t.Context(), platformA, got.Token, issuer.Proof{}); !errors.Is(err, issuer.ErrStoreUnavailable) {
			t.Errorf("Introspect() error = %v, want ErrStoreUnavailable", err)
		}
	})
}

func TestCompleteTask(t *testing.T) {
	t.Parallel()
	f := newFixture(t, allow(time.Hour), t0)
	for range 2 {
		if _, err := f.iss.Issue(t.Context(), validRequest()); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := f.iss.CompleteTask(t.Context(), platformA, "task-42", "summary delivered")
	if err != nil || len(ids) != 2 {
		t.Fatalf("CompleteTask() = %v, %v; want two ids", ids, err)
	}
	n, evs := f.store.snapshot()
	if n != 0 {
		t.Errorf("%d credentials left", n)
	}
	var types []eventsv1.EventType
	for _, ev := range evs[4:] {
		types = append(types, ev.Type)
	}
	want := []eventsv1.EventType{
		eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED,
		eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED,
	}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	completed := evs[len(evs)-1]
	if completed.Task.GetId() != "task-42" || completed.Reason != "summary delivered" || completed.Issuer != testIssuer {
		t.Errorf("completed event = %v", completed)
	}
	if _, err := f.iss.CompleteTask(t.Context(), platformA, "", ""); !errors.Is(err, issuer.ErrInvalidArgument) {
		t.Errorf("CompleteTask(\"\") error = %v, want ErrInvalidArgument", err)
	}
}

// TestRevokeLogsTheCountAndFewIDs: a revocation's log line names the
// credentials only when they are few; a delegator's hundred thousand would
// make one line of megabytes.
func TestRevokeLogsTheCountAndFewIDs(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 20, 21, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			f := newFixture(t, allow(time.Hour), t0, func(c *issuer.Config) {
				c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			})
			for range n {
				if _, err := f.iss.Issue(t.Context(), validRequest()); err != nil {
					t.Fatal(err)
				}
			}
			ids, err := f.iss.Revoke(t.Context(), platformA, issuer.Selector{Kind: issuer.ByDelegator, ID: "user:alice@example.com"}, "left")
			if err != nil || len(ids) != n {
				t.Fatalf("Revoke() = %d ids, %v; want %d", len(ids), err, n)
			}
			var line struct {
				Msg           string   `json:"msg"`
				Count         int      `json:"count"`
				CredentialIDs []string `json:"credential_ids"`
			}
			found := false
			for l := range strings.Lines(logs.String()) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
				if line.Msg == "credentials revoked" {
					found = true
					break
				}
			}
			if !found {
				t.Fatalf("no \"credentials revoked\" line in %s", logs.String())
			}
			if line.Count != n {
				t.Errorf("count = %d, want %d", line.Count, n)
			}
			wantIDs := 0
			if n <= 20 {
				wantIDs = n
			}
			if len(line.CredentialIDs) != wantIDs {
				t.Errorf("credential_ids lists %d ids, want %d", len(line.CredentialIDs), wantIDs)
			}
		})
	}
}

func TestSelectorValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, allow(time.Hour), t0)
	tests := []struct {
		name  string
		sel   issuer.Selector
		field string
	}{
		{"no selector", issuer.Selector{}, "selector"},
		{"empty task id", issuer.Selector{Kind: issuer.ByTask}, "task_id"},
		{"long agent id", issuer.Selector{Kind: issuer.ByAgent, ID: strings.Repeat("a", 300)}, "agent_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := f.iss.Revoke(t.Context(), platformA, tt.sel, "")
			var ia *issuer.InvalidArgumentError
			if !errors.As(err, &ia) || ia.Field != tt.field {
				t.Errorf("Revoke() error = %v, want invalid %s", err, tt.field)
			}
			_, err = f.iss.List(t.Context(), platformA, tt.sel, 0, "")
			if !errors.As(err, &ia) || ia.Field != tt.field {
				t.Errorf("List() error = %v, want invalid %s", err, tt.field)
			}
		})
	}
	if _, err := f.iss.List(t.Context(), platformA, issuer.Selector{Kind: issuer.ByTask, ID: "t"}, issuer.MaxPageSize+1, ""); !errors.Is(err, issuer.ErrInvalidArgument) {
		t.Errorf("List(page size too big) error = %v", err)
	}
}
