package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenRejectsUnknownDSN(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{"", "mysql://x", "sqlite://", "jitid-audit.db"} {
		if _, err := sqlstore.Open(dsn); !errors.Is(err, sqlstore.ErrUnsupportedDSN) {
			t.Errorf("Open(%q) error = %v, want ErrUnsupportedDSN", dsn, err)
		}
	}
}

func TestAppendChainsAndVerifies(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			st := b.open(t)(t)
			svc := audit.New(st, audit.Options{Clock: fixedClock})
			var want []*eventsv1.LifecycleEvent
			for batch := range 3 {
				evs := events(batch*7, batch*7+7)
				want = append(want, evs...)
				res, err := svc.Append(ctx, evs)
				if err != nil {
					t.Fatal(err)
				}
				if res.Stored != 7 || res.Duplicates != 0 || res.Head.Sequence != int64(batch*7+7) {
					t.Fatalf("Append() = %+v, want 7 stored, head %d", res, batch*7+7)
				}
			}
			recs, err := st.Query(ctx, audit.Query{})
			if err != nil {
				t.Fatal(err)
			}
			var got []*eventsv1.LifecycleEvent
			prev := ""
			for i, r := range recs {
				if r.Sequence != int64(i+1) || r.PrevHash != prev || r.Hash != audit.Hash(&r) {
					t.Errorf("record %d: sequence %d prev %q hash %q", i, r.Sequence, r.PrevHash, r.Hash)
				}
				if !r.RecordedAt.Equal(fixedClock()) {
					t.Errorf("record %d recorded_at = %v, want %v", i, r.RecordedAt, fixedClock())
				}
				prev = r.Hash
				ev, err := r.DecodeEvent()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("stored events (-want +got):\n%s", diff)
			}
			v, err := svc.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(audit.Verification{OK: true, Checked: 21}, v); diff != "" {
				t.Errorf("Verify() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendIsIdempotentByEventID(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			svc := audit.New(b.open(t)(t), audit.Options{})
			steps := []struct {
				evs            []*eventsv1.LifecycleEvent
				stored, dupes  int
				wantHeadSeqNum int64
			}{
				{evs: events(0, 3), stored: 3, wantHeadSeqNum: 3},
				// The same event twice in one batch, as when it was
				// published under two message ids.
				{evs: append(events(3, 4), event(3)), stored: 1, dupes: 1, wantHeadSeqNum: 4},
				// A redelivered batch, partly new.
				{evs: events(2, 6), stored: 2, dupes: 2, wantHeadSeqNum: 6},
				{evs: events(0, 6), stored: 0, dupes: 6, wantHeadSeqNum: 6},
			}
			for i, s := range steps {
				res, err := svc.Append(ctx, s.evs)
				if err != nil {
					t.Fatal(err)
				}
				if res.Stored != s.stored || res.Duplicates != s.dupes || res.Head.Sequence != s.wantHeadSeqNum {
					t.Errorf("step %d: Append() = %+v, want stored %d dupes %d head %d", i, res, s.stored, s.dupes, s.wantHeadSeqNum)
				}
			}
			if v, err := svc.Verify(ctx); err != nil || !v.OK || v.Checked != 6 {
				t.Errorf("Verify() = %+v, %v; want ok over 6", v, err)
			}
		})
	}
}

// tamper edits the stored log of 5 records the way an attacker with
// database access might; wantBad is the sequence VerifyLog must name.
var tamperCases = []struct {
	name    string
	tamper  func(ctx context.Context, t *testing.T, db *sql.DB, st *sqlstore.Store)
	wantBad int64
}{
	{"edit task_id", execSQL("UPDATE audit_records SET task_id = 'task-other' WHERE sequence = 3"), 3},
	{"edit agent_id", execSQL("UPDATE audit_records SET agent_id = 'agent-x' WHERE sequence = 2"), 2},
	{"edit delegator_id", execSQL("UPDATE audit_records SET delegator_id = 'user:mallory' WHERE sequence = 4"), 4},
	{"edit credential_id", execSQL("UPDATE audit_records SET credential_id = 'cred-x' WHERE sequence = 1"), 1},
	{"edit event_id", execSQL("UPDATE audit_records SET event_id = 'evt-x' WHERE sequence = 3"), 3},
	{"edit event_type", execSQL("UPDATE audit_records SET event_type = 4 WHERE sequence = 3"), 3},
	{"edit event_time", execSQL("UPDATE audit_records SET event_time = event_time + 1 WHERE sequence = 3"), 3},
	{"edit recorded_at", execSQL("UPDATE audit_records SET recorded_at = recorded_at - 1000 WHERE sequence = 5"), 5},
	{"edit event bytes", editEventBytes(3), 3},
	{"edit hash", execSQL("UPDATE audit_records SET hash = prev_hash WHERE sequence = 3"), 3},
	{"edit prev_hash", execSQL("UPDATE audit_records SET prev_hash = '' WHERE sequence = 3"), 3},
	// Rehashing the edited record hides it from its own hash check; the
	// next record's prev_hash still names it.
	{"edit and rehash", editAndRehash(3), 4},
	{"drop a record", execSQL("DELETE FROM audit_records WHERE sequence = 3"), 3},
	{"drop the first record", execSQL("DELETE FROM audit_records WHERE sequence = 1"), 1},
	{"drop the last record", execSQL("DELETE FROM audit_records WHERE sequence = 5"), 5},
	{"reorder two records", execSQL(
		"UPDATE audit_records SET sequence = 100 WHERE sequence = 2",
		"UPDATE audit_records SET sequence = 2 WHERE sequence = 3",
		"UPDATE audit_records SET sequence = 3 WHERE sequence = 100"), 2},
}

func execSQL(stmts ...string) func(context.Context, *testing.T, *sql.DB, *sqlstore.Store) {
	return func(ctx context.Context, t *testing.T, db *sql.DB, _ *sqlstore.Store) {
		for _, s := range stmts {
			if _, err := db.ExecContext(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
}

func recordAt(ctx context.Context, t *testing.T, st *sqlstore.Store, seq int64) audit.Record {
	recs, err := st.Query(ctx, audit.Query{After: seq - 1, Through: seq})
	if err != nil || len(recs) != 1 {
		t.Fatalf("record %d: %v, %d found", seq, err, len(recs))
	}
	return recs[0]
}

func update(ctx context.Context, t *testing.T, db *sql.DB, st *sqlstore.Store, stmt string, args ...any) {
	if st.Backend() == "postgres" {
		stmt = fmt.Sprintf(stmt, "$1", "$2")
	} else {
		stmt = fmt.Sprintf(stmt, "?", "?")
	}
	if _, err := db.ExecContext(ctx, stmt, args...); err != nil {
		t.Fatal(err)
	}
}

func editEventBytes(seq int64) func(context.Context, *testing.T, *sql.DB, *sqlstore.Store) {
	return func(ctx context.Context, t *testing.T, db *sql.DB, st *sqlstore.Store) {
		r := recordAt(ctx, t, st, seq)
		ev, err := r.DecodeEvent()
		if err != nil {
			t.Fatal(err)
		}
		ev.Scopes = append(ev.Scopes, "tickets:write")
		edited, err := audit.NewRecord(ev, r.RecordedAt)
		if err != nil {
			t.Fatal(err)
		}
		update(ctx, t, db, st, "UPDATE audit_records SET event = %s WHERE sequence = %s", edited.Event, seq)
	}
}

func editAndRehash(seq int64) func(context.Context, *testing.T, *sql.DB, *sqlstore.Store) {
	return func(ctx context.Context, t *testing.T, db *sql.DB, st *sqlstore.Store) {
		r := recordAt(ctx, t, st, seq)
		r.TaskID = "task-other"
		update(ctx, t, db, st, "UPDATE audit_records SET task_id = 'task-other', hash = %s WHERE sequence = %s", audit.Hash(&r), seq)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		for _, tc := range tamperCases {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := ctxT(t)
				st := b.open(t)(t)
				svc := audit.New(st, audit.Options{})
				if _, err := svc.Append(ctx, events(0, 5)); err != nil {
					t.Fatal(err)
				}
				tc.tamper(ctx, t, st.DB(), st)
				v, err := svc.Verify(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if v.OK || v.FirstBad != tc.wantBad || v.Problem == "" {
					t.Errorf("Verify() = %+v, want not ok, first bad %d, a problem", v, tc.wantBad)
				}
			})
		}
	}
}

// TestConcurrentAppendersKeepOneChain runs two stores on one log, as two
// audit replicas would, appending overlapping batches at once.
func TestConcurrentAppendersKeepOneChain(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			open := b.open(t)
			replicas := []*audit.Service{
				audit.New(open(t), audit.Options{}),
				audit.New(open(t), audit.Options{}),
			}
			const workers, batches, perBatch = 4, 10, 5
			var wg sync.WaitGroup
			errc := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					svc := replicas[w%len(replicas)]
					for i := range batches {
						// Workers 0 and 1 send the same events, as two
						// replicas handed one redelivered message would.
						from := ((w/2)*batches + i) * perBatch
						if _, err := svc.Append(ctx, events(from, from+perBatch)); err != nil {
							errc <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			const want = workers / 2 * batches * perBatch
			v, err := replicas[0].Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(audit.Verification{OK: true, Checked: want}, v); diff != "" {
				t.Errorf("Verify() (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkAppend100(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			svc := audit.New(be.open(b)(b), audit.Options{})
			batch := events(0, 100)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for j, ev := range batch {
					ev.Id = fmt.Sprintf("evt-%d-%d", i, j)
				}
				if _, err := svc.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/100, "µs/event")
		})
	}
}
