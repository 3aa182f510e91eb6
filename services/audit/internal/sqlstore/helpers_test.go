package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/audit/internal/sqlstore"
	"github.com/jitid/jitid/testkit/testserver"
)

// envPostgresDSN names a PostgreSQL server for tests; unset, the
// PostgreSQL cases are skipped.
const envPostgresDSN = "JITID_TEST_POSTGRES_DSN"

// backend opens a fresh, empty log; calling open again returns another
// Store on the same log, as a second replica would have.
type backend struct {
	name string
	open func(t testing.TB) (newStore func(t testing.TB) *sqlstore.Store)
}

var backends = []backend{
	{name: "sqlite", open: sqliteLog},
	{name: "postgres", open: postgresLog},
}

func sqliteLog(t testing.TB) func(testing.TB) *sqlstore.Store {
	path := filepath.Join(t.TempDir(), "audit.db")
	return func(t testing.TB) *sqlstore.Store { return openInit(t, "sqlite://"+path) }
}

// postgresLog gives the test its own schema, selected with search_path,
// so that tests run in parallel on one database and leave nothing behind.
func postgresLog(t testing.TB) func(testing.TB) *sqlstore.Store {
	dsn := os.Getenv(envPostgresDSN)
	if dsn == "" {
		if testserver.InCI() {
			t.Logf("%s unset: PostgreSQL cases skipped", envPostgresDSN)
		}
		t.Skipf("%s unset", envPostgresDSN)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := testserver.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return func(t testing.TB) *sqlstore.Store { return openInit(t, u.String()) }
}

func openInit(t testing.TB, dsn string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

var baseTime = time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)

// event returns a distinct, fully populated issued event.
func event(i int) *eventsv1.LifecycleEvent {
	at := baseTime.Add(time.Duration(i) * time.Second)
	return &eventsv1.LifecycleEvent{
		Id:           fmt.Sprintf("evt-%06d", i),
		Type:         eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time:         timestamppb.New(at),
		CredentialId: fmt.Sprintf("cred-%d", i),
		Agent:        &identityv1.Agent{Id: fmt.Sprintf("agent-%d", i%3), Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL},
		Delegator:    &identityv1.Delegator{Id: "user:alice"},
		Task:         &identityv1.Task{Id: fmt.Sprintf("task-%d", i%2), Purpose: "summarise tickets", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
		Scopes:       []string{"tickets:read"},
		IssueTime:    timestamppb.New(at),
		ExpireTime:   timestamppb.New(at.Add(time.Minute)),
	}
}

func events(from, to int) []*eventsv1.LifecycleEvent {
	var out []*eventsv1.LifecycleEvent
	for i := from; i < to; i++ {
		out = append(out, event(i))
	}
	return out
}

func fixedClock() time.Time { return baseTime.Add(time.Hour) }
