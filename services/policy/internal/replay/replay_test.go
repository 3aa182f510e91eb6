package replay_test

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/policy/internal/policy"
	"github.com/jitid/jitid/services/policy/internal/replay"
)

// auditLog serves QueryEvents from a fixed list of real LifecycleEvent
// records, filtering by type and time and paginating like the audit
// service. The real audit service lives in a module whose packages this one
// cannot import; its wire contract is what replay depends on.
type auditLog struct {
	auditv1.UnimplementedAuditServiceServer
	records []*auditv1.AuditRecord
	pages   int
}

func (a *auditLog) QueryEvents(_ context.Context, req *auditv1.QueryEventsRequest) (*auditv1.QueryEventsResponse, error) {
	a.pages++
	f := req.GetFilter()
	from := 0
	if req.GetPageToken() != "" {
		from, _ = strconv.Atoi(req.GetPageToken())
	}
	resp := &auditv1.QueryEventsResponse{}
	for i := from; i < len(a.records); i++ {
		ev := a.records[i].GetEvent()
		t := ev.GetTime().AsTime()
		typeOK := len(f.GetTypes()) == 0
		for _, ty := range f.GetTypes() {
			typeOK = typeOK || ty == ev.GetType()
		}
		if !typeOK || t.Before(f.GetStartTime().AsTime()) || !t.Before(f.GetEndTime().AsTime()) {
			continue
		}
		if len(resp.Records) == int(req.GetPageSize()) {
			resp.NextPageToken = strconv.Itoa(i)
			break
		}
		resp.Records = append(resp.Records, a.records[i])
	}
	return resp, nil
}

func startAudit(t *testing.T, log *auditLog) auditv1.AuditServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	auditv1.RegisterAuditServiceServer(gs, log)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return auditv1.NewAuditServiceClient(conn)
}

var day = time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)

func event(id string, typ eventsv1.EventType, at time.Duration, mod func(*eventsv1.LifecycleEvent)) *auditv1.AuditRecord {
	ev := &eventsv1.LifecycleEvent{
		Id: id, Type: typ, Time: timestamppb.New(day.Add(at)), CredentialId: "cred-" + id,
		Agent:           &identityv1.Agent{Id: "agent-1", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
		Delegator:       &identityv1.Delegator{Id: "alice", Entitlements: []string{"mail:read", "mail:send"}},
		Task:            &identityv1.Task{Id: "task-" + id, Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
		Scopes:          []string{"mail:read", "mail:send"},
		RequestedScopes: []string{"mail:read", "mail:send"},
		RequestedTtl:    durationpb.New(time.Hour),
		Decision:        &identityv1.Decision{Allow: true, GrantedScopes: []string{"mail:read", "mail:send"}, MaxTtl: durationpb.New(time.Hour)},
	}
	if typ == eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED {
		ev.CredentialId = ""
		ev.Decision = &identityv1.Decision{}
	}
	if mod != nil {
		mod(ev)
	}
	return &auditv1.AuditRecord{Event: ev}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	issued, denied, exchanged := eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED
	log := &auditLog{records: []*auditv1.AuditRecord{
		event("same", issued, time.Hour, func(e *eventsv1.LifecycleEvent) {
			e.Scopes, e.RequestedScopes = []string{"mail:read"}, []string{"mail:read"}
			e.Decision.MaxTtl = durationpb.New(30 * time.Minute)
		}),
		event("narrowed", issued, 2*time.Hour, nil),
		event("denied-now", issued, 3*time.Hour, func(e *eventsv1.LifecycleEvent) {
			e.Scopes, e.RequestedScopes = []string{"mail:send"}, []string{"mail:send"}
		}),
		event("widened", denied, 4*time.Hour, func(e *eventsv1.LifecycleEvent) {
			e.Scopes, e.RequestedScopes = []string{"mail:read"}, []string{"mail:read"}
			e.RequestedTtl = durationpb.New(10 * time.Minute)
		}),
		// Recorded before the issuer filled requested_*: replayed from the grant.
		event("fallback", exchanged, 5*time.Hour, func(e *eventsv1.LifecycleEvent) {
			e.RequestedScopes, e.RequestedTtl = nil, nil
			e.Scopes = []string{"mail:read"}
			e.Decision.MaxTtl = durationpb.New(20 * time.Minute)
		}),
		// Not a decision, and outside the range: never replayed.
		event("revoked", eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, 6*time.Hour, nil),
		event("yesterday", issued, -time.Hour, nil),
	}}
	client := startAudit(t, log)
	// The candidate: reading for 30 minutes, sending never.
	set, err := policy.Compile("candidate", []policy.File{{Name: "c.cedar", Path: "c.cedar", Content: []byte(`
@id("read") @max_ttl("30m") permit (principal, action == Jitid::Action::"mail:read", resource);
@id("no-send") @reason("agents no longer send mail") forbid (principal, action == Jitid::Action::"mail:send", resource);
`)}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replay.Run(context.Background(), client, set, replay.Options{Start: day, End: day.Add(24 * time.Hour), PageSize: 2})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if log.pages < 3 {
		t.Errorf("QueryEvents called %d times, want the pages walked (page size 2)", log.pages)
	}
	wantCounts := map[replay.Outcome]int{replay.Same: 2, replay.Narrowed: 1, replay.Denied: 1, replay.Widened: 1}
	if diff := cmp.Diff(wantCounts, rep.Counts); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	type row struct {
		ID        string
		Outcome   replay.Outcome
		NowScopes []string
		NowTTL    time.Duration
	}
	var got []row
	for _, e := range rep.Entries {
		got = append(got, row{e.EventID, e.Outcome, e.NowScopes, e.NowTTL})
	}
	want := []row{
		{"narrowed", replay.Narrowed, []string{"mail:read"}, 30 * time.Minute},
		{"denied-now", replay.Denied, nil, 0},
		{"widened", replay.Widened, []string{"mail:read"}, 10 * time.Minute},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	var out bytes.Buffer
	replay.Write(&out, rep)
	for _, s := range []string{"5 decisions replayed: 2 same, 1 would now be denied, 1 narrowed, 1 widened", "DENIED", "agents no longer send mail"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
}
