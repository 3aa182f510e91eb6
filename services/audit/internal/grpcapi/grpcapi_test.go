package grpcapi_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/pkg/grpcserver"
	"github.com/jitid/jitid/pkg/statusreason"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/grpcapi"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
	"github.com/jitid/jitid/testkit/grpctest"
	"github.com/jitid/jitid/testkit/testserver"
)

var (
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
	baseTime = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
)

const (
	issued  = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED
	revoked = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED
	denied  = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED
)

// event i: tasks alternate t0/t1, agents cycle a0..a2, delegators d0/d1
// every 5, one credential per event, a minute apart; every third event
// is a revocation and every seventh a denial.
func event(i int) *eventsv1.LifecycleEvent {
	typ := issued
	switch {
	case i%7 == 6:
		typ = denied
	case i%3 == 2:
		typ = revoked
	}
	return &eventsv1.LifecycleEvent{
		Id:           fmt.Sprintf("evt-%03d", i),
		Type:         typ,
		Time:         timestamppb.New(baseTime.Add(time.Duration(i) * time.Minute)),
		CredentialId: fmt.Sprintf("cred-%d", i),
		Agent:        &identityv1.Agent{Id: fmt.Sprintf("a%d", i%3)},
		Delegator:    &identityv1.Delegator{Id: fmt.Sprintf("d%d", i/5%2)},
		Task:         &identityv1.Task{Id: fmt.Sprintf("t%d", i%2)},
		Scopes:       []string{"tickets:read"},
	}
}

func events(from, to int) []*eventsv1.LifecycleEvent {
	var out []*eventsv1.LifecycleEvent
	for i := from; i < to; i++ {
		out = append(out, event(i))
	}
	return out
}

const auditor = "spiffe://jitid.test/auditor"

// asAuditor is the test servers' authentication step: every call's caller
// is the auditor, as mTLS or a bearer token would make it in the service.
func asAuditor(ctx context.Context) (context.Context, error) {
	return grpcserver.WithCaller(ctx, auditor), nil
}

type fixture struct {
	client auditv1.AuditServiceClient
	svc    *audit.Service
	dbPath string
}

// start serves the AuditService over a real socket, on a SQLite log of
// its own, the way cmd/audit wires it.
func start(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	svc := audit.New(openStore(t, path), audit.Options{TailPollInterval: 50 * time.Millisecond, Logger: quiet})
	srv := grpcserver.New(grpcserver.Options{Name: "audit", GRPCAddr: "127.0.0.1:0", Logger: quiet, Authenticate: asAuditor})
	grpcapi.New(svc, quiet, grpcapi.Options{Readers: []string{auditor}}).Register(srv.GRPC())
	conn := grpctest.Run(t, srv)
	return &fixture{client: auditv1.NewAuditServiceClient(conn), svc: svc, dbPath: path}
}

func openStore(t *testing.T, path string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open("sqlite://" + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) append(t *testing.T, evs []*eventsv1.LifecycleEvent) {
	t.Helper()
	if _, err := f.svc.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func eventIDs(recs []*auditv1.AuditRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.GetEvent().GetId())
	}
	return out
}

func idsOf(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, event(i).GetId())
	}
	return out
}

func TestQueryEventsFilters(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.append(t, events(0, 12))
	tests := []struct {
		name   string
		filter *auditv1.EventFilter
		want   []string
	}{
		{"no filter", nil, idsOf(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)},
		{"task", &auditv1.EventFilter{TaskId: "t1"}, idsOf(1, 3, 5, 7, 9, 11)},
		{"agent", &auditv1.EventFilter{AgentId: "a2"}, idsOf(2, 5, 8, 11)},
		{"delegator", &auditv1.EventFilter{DelegatorId: "d1"}, idsOf(5, 6, 7, 8, 9)},
		{"credential", &auditv1.EventFilter{CredentialId: "cred-4"}, idsOf(4)},
		{"types", &auditv1.EventFilter{Types: []eventsv1.EventType{revoked, denied}}, idsOf(2, 5, 6, 8, 11)},
		{"time range, start inclusive, end exclusive", &auditv1.EventFilter{
			StartTime: timestamppb.New(baseTime.Add(3 * time.Minute)),
			EndTime:   timestamppb.New(baseTime.Add(6 * time.Minute)),
		}, idsOf(3, 4, 5)},
		{"combined", &auditv1.EventFilter{TaskId: "t0", AgentId: "a2", Types: []eventsv1.EventType{revoked}}, idsOf(2, 8)},
		{"no match", &auditv1.EventFilter{TaskId: "t9"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := f.client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, eventIDs(resp.GetRecords())); diff != "" {
				t.Errorf("event ids (-want +got):\n%s", diff)
			}
			if resp.GetNextPageToken() != "" {
				t.Errorf("next_page_token = %q on the only page", resp.GetNextPageToken())
			}
		})
	}
}

func TestQueryEventsRecordContents(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.append(t, events(0, 2))
	resp, err := f.client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetRecords()
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	want := []*auditv1.AuditRecord{
		{Sequence: 1, Event: event(0), PrevHash: ""},
		{Sequence: 2, Event: event(1), PrevHash: got[0].GetHash()},
	}
	ignore := protocmp.IgnoreFields(&auditv1.AuditRecord{}, "hash", "record_time")
	if diff := cmp.Diff(want, got, protocmp.Transform(), ignore); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if len(got[0].GetHash()) != 64 || got[0].GetHash() == got[1].GetHash() {
		t.Errorf("hashes %q, %q: want distinct hex SHA-256", got[0].GetHash(), got[1].GetHash())
	}
}

func TestQueryEventsPages(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.append(t, events(0, 25))
	var got []string
	token := ""
	pages := 0
	for {
		resp, err := f.client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{PageSize: 10, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, eventIDs(resp.GetRecords())...)
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
		// Records appended between pages land on later pages.
		if pages == 1 {
			f.append(t, events(25, 27))
		}
	}
	var want []string
	for i := range 27 {
		want = append(want, event(i).GetId())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged event ids (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
}

func TestQueryEventsInvalidArgument(t *testing.T) {
	t.Parallel()
	f := start(t)
	tests := []struct {
		name string
		req  *auditv1.QueryEventsRequest
	}{
		{"negative page size", &auditv1.QueryEventsRequest{PageSize: -1}},
		{"page token not base64", &auditv1.QueryEventsRequest{PageToken: "!!"}},
		{"page token of another form", &auditv1.QueryEventsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("offset:10"))}},
		{"page token with zero sequence", &auditv1.QueryEventsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("seq1:0"))}},
		{"end before start", &auditv1.QueryEventsRequest{Filter: &auditv1.EventFilter{
			StartTime: timestamppb.New(baseTime), EndTime: timestamppb.New(baseTime.Add(-time.Second)),
		}}},
		{"invalid timestamp", &auditv1.QueryEventsRequest{Filter: &auditv1.EventFilter{StartTime: &timestamppb.Timestamp{Nanos: -1}}}},
		{"unspecified type", &auditv1.QueryEventsRequest{Filter: &auditv1.EventFilter{Types: []eventsv1.EventType{eventsv1.EventType_EVENT_TYPE_UNSPECIFIED}}}},
		{"unknown type", &auditv1.QueryEventsRequest{Filter: &auditv1.EventFilter{Types: []eventsv1.EventType{99}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := f.client.QueryEvents(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || statusreason.Of(err) != statusreason.InvalidRequest {
				t.Errorf("QueryEvents() code = %v, reason %q, want InvalidArgument, %s (%v)", status.Code(err), statusreason.Of(err), statusreason.InvalidRequest, err)
			}
		})
	}
	if _, err := f.client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{PageSize: 1000}); err != nil {
		t.Errorf("QueryEvents(page_size 1000) = %v", err)
	}
}

// AIP-158: a page size above the largest page is served at the largest
// page, not refused.
func TestQueryEventsPageSizeAboveMaxIsCoerced(t *testing.T) {
	t.Parallel()
	f := start(t)
	for _, n := range []int32{1001, math.MaxInt32} {
		if _, err := f.client.QueryEvents(context.Background(), &auditv1.QueryEventsRequest{PageSize: n}); err != nil {
			t.Errorf("QueryEvents(page_size %d) = %v; want the largest page", n, err)
		}
	}
}

// recv reads n records from a tail, failing after a generous deadline.
func recv(t *testing.T, stream grpc.ServerStreamingClient[auditv1.TailEventsResponse], n int) []string {
	t.Helper()
	var got []string
	for range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv() after %v: %v", got, err)
		}
		got = append(got, resp.GetRecord().GetEvent().GetId())
	}
	return got
}

func TestTailEvents(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.append(t, events(0, 4))
	// A second replica writes to the same log; the tail sees its records
	// through the poll, not the in-process notification.
	replica := audit.New(openStore(t, f.dbPath), audit.Options{})

	tests := []struct {
		name  string
		req   *auditv1.TailEventsRequest
		old   []string
		write func(t *testing.T)
		new   []string
	}{
		{
			name:  "replay then live, filtered",
			req:   &auditv1.TailEventsRequest{AfterSequence: 1, Filter: &auditv1.EventFilter{TaskId: "t0"}},
			old:   idsOf(2),
			write: func(t *testing.T) { f.append(t, events(4, 7)) },
			new:   idsOf(4, 6),
		},
		{
			name: "from now, records of another replica",
			req:  &auditv1.TailEventsRequest{},
			write: func(t *testing.T) {
				if _, err := replica.Append(context.Background(), events(10, 12)); err != nil {
					t.Error(err)
				}
			},
			new: idsOf(10, 11),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case appends to the shared log.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stream, err := f.client.TailEvents(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.old, recv(t, stream, len(tt.old))); diff != "" {
				t.Errorf("replayed (-want +got):\n%s", diff)
			}
			// The header arrives once the tail knows where it starts, so
			// records written from here on must reach it.
			md, err := stream.Header()
			if err != nil {
				t.Fatal(err)
			}
			if got := md.Get(grpcapi.TailStartHeader); len(got) != 1 {
				t.Errorf("header %s = %v, want one sequence", grpcapi.TailStartHeader, got)
			}
			tt.write(t)
			if diff := cmp.Diff(tt.new, recv(t, stream, len(tt.new))); diff != "" {
				t.Errorf("live (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTailEventsInvalidArgument(t *testing.T) {
	t.Parallel()
	f := start(t)
	tests := []struct {
		name string
		req  *auditv1.TailEventsRequest
	}{
		{"negative after_sequence", &auditv1.TailEventsRequest{AfterSequence: -1}},
		{"unknown type", &auditv1.TailEventsRequest{Filter: &auditv1.EventFilter{Types: []eventsv1.EventType{42}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream, err := f.client.TailEvents(context.Background(), tt.req)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("TailEvents() code = %v, want InvalidArgument (%v)", status.Code(err), err)
			}
		})
	}
}

func TestVerifyLog(t *testing.T) {
	t.Parallel()
	f := start(t)
	f.append(t, events(0, 5))
	got, err := f.client.VerifyLog(context.Background(), &auditv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&auditv1.VerifyLogResponse{Ok: true, RecordsChecked: 5}, got, protocmp.Transform()); diff != "" {
		t.Errorf("VerifyLog() on a whole log (-want +got):\n%s", diff)
	}

	db, err := sql.Open("sqlite", f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE audit_records SET delegator_id = 'user:mallory' WHERE sequence = 2"); err != nil {
		t.Fatal(err)
	}
	got, err = f.client.VerifyLog(context.Background(), &auditv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetOk() || got.GetFirstBadSequence() != 2 || got.GetRecordsChecked() != 2 || got.GetProblem() == "" {
		t.Errorf("VerifyLog() after an edit = %v, want not ok at 2 with a problem", got)
	}
}

// A log store that cannot be reached is UNAVAILABLE (retry later), not an
// internal error.
func TestStoreDownIsUnavailable(t *testing.T) {
	t.Parallel()
	// Nothing listens there: every read fails to connect.
	st, err := sqlstore.Open(fmt.Sprintf("postgres://postgres@%s/test?sslmode=disable&connect_timeout=2", testserver.ClosedAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc := audit.New(st, audit.Options{Logger: quiet})
	srv := grpcserver.New(grpcserver.Options{Name: "audit", GRPCAddr: "127.0.0.1:0", Logger: quiet, Authenticate: asAuditor})
	grpcapi.New(svc, quiet, grpcapi.Options{Readers: []string{auditor}}).Register(srv.GRPC())
	client := auditv1.NewAuditServiceClient(grpctest.Run(t, srv))
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := client.QueryEvents(cctx, &auditv1.QueryEventsRequest{}); status.Code(err) != codes.Unavailable || statusreason.Of(err) != statusreason.StoreUnavailable {
		t.Errorf("QueryEvents with the store down: %v (reason %q), want UNAVAILABLE, %s", err, statusreason.Of(err), statusreason.StoreUnavailable)
	}
	if _, err := client.VerifyLog(cctx, &auditv1.VerifyLogRequest{}); status.Code(err) != codes.Unavailable || statusreason.Of(err) != statusreason.StoreUnavailable {
		t.Errorf("VerifyLog with the store down: %v (reason %q), want UNAVAILABLE, %s", err, statusreason.Of(err), statusreason.StoreUnavailable)
	}
}
