// Package sqlstore keeps the audit log in SQL: embedded SQLite
// (modernc.org/sqlite, pure Go) by default, PostgreSQL (pgx) for several
// replicas and larger logs. One implementation serves both through
// database/sql; the few differences live in dialect.
//
// Schema (both backends):
//
//	audit_records     one row per event; sequence is the primary key, event_id
//	                  is unique; times are UTC nanoseconds since the Unix epoch
//	                  (BIGINT), so that a record hashes the same on both
//	                  backends (PostgreSQL timestamps keep only microseconds).
//	audit_chain_head  one row (id = 1): the last sequence and its hash. Appends
//	                  lock it (FOR UPDATE on PostgreSQL; SQLite's single writer
//	                  with BEGIN IMMEDIATE), which serializes every appender,
//	                  and VerifyLog checks it, so records dropped from the end
//	                  are found too.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
)

// ErrUnsupportedDSN reports a DSN that is neither sqlite:// nor postgres://.
var ErrUnsupportedDSN = errors.New("sqlstore: unsupported DSN")

// dialect holds what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// numbered placeholders ($1) instead of ?.
	numbered bool
	blob     string
	// lockHead is appended to the head SELECT in an append transaction.
	lockHead string
	// maxParams bounds the bind parameters of one statement.
	maxParams int
}

var (
	sqliteDialect   = dialect{name: "sqlite", blob: "BLOB", maxParams: 32000}
	postgresDialect = dialect{name: "postgres", numbered: true, blob: "BYTEA", lockHead: " FOR UPDATE", maxParams: 65000}
)

// Store is the audit log in a SQL database.
type Store struct {
	db *sql.DB
	d  dialect
	// appendMu serializes appends within this process. The database lock
	// is what makes the chain linear across processes; this only keeps
	// local appenders from queueing on it (and, on SQLite, from spinning
	// in busy_timeout).
	appendMu sync.Mutex
}

// Open returns a Store for dsn without touching the database, so that the
// service can start while the database is down; Init creates the schema.
// dsn is sqlite://<path> or postgres://… (postgresql:// too).
func Open(dsn string) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		path := strings.TrimPrefix(dsn, "sqlite://")
		if path == "" {
			return nil, fmt.Errorf("%w: sqlite:// needs a file path", ErrUnsupportedDSN)
		}
		db, err := sql.Open("sqlite", sqliteDSN(path))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: open sqlite %s: %w", path, err)
		}
		return &Store{db: db, d: sqliteDialect}, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: open postgres: %w", err)
		}
		return &Store{db: db, d: postgresDialect}, nil
	default:
		return nil, fmt.Errorf("%w: want sqlite://<path> or postgres://…", ErrUnsupportedDSN)
	}
}

// sqliteDSN sets what every connection needs: WAL so that readers never
// block the writer, a busy timeout instead of an immediate SQLITE_BUSY,
// synchronous=FULL because an event is acked to JetStream as soon as its
// commit returns and must survive a power cut, and BEGIN IMMEDIATE so that
// an append takes the write lock before it reads the chain head.
func sqliteDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return "file:" + path + sep + q.Encode()
}

// Backend names the database in use: "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.name }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Init creates the schema when missing. It is safe to run from several
// replicas at once.
func (s *Store) Init(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: init: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if s.d.name == "postgres" {
		// CREATE TABLE IF NOT EXISTS races with itself on PostgreSQL
		// (duplicate pg_type rows); a transaction-scoped advisory lock
		// lets one replica at a time create the schema.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7171234500001)"); err != nil {
			return fmt.Errorf("sqlstore: init: lock: %w", err)
		}
	}
	for _, stmt := range s.schema() {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlstore: init: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: init: commit: %w", err)
	}
	return nil
}

// InitRetry runs Init until it succeeds or ctx ends, backing off up to
// maxBackoff between tries, so that the service starts while its
// database is still coming up.
func (s *Store) InitRetry(ctx context.Context, log *slog.Logger, maxBackoff time.Duration) error {
	backoff := 100 * time.Millisecond
	for {
		err := s.Init(ctx)
		if err == nil {
			return nil
		}
		log.Warn("audit store not ready; retrying", "backend", s.d.name, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (s *Store) schema() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS audit_records (
			sequence      BIGINT PRIMARY KEY,
			event_id      TEXT NOT NULL UNIQUE,
			event_time    BIGINT NOT NULL,
			event_type    INTEGER NOT NULL,
			task_id       TEXT NOT NULL,
			agent_id      TEXT NOT NULL,
			delegator_id  TEXT NOT NULL,
			credential_id TEXT NOT NULL,
			event         ` + s.d.blob + ` NOT NULL,
			recorded_at   BIGINT NOT NULL,
			prev_hash     TEXT NOT NULL,
			hash          TEXT NOT NULL
		)`,
		// Each index ends in sequence so that a filtered page in
		// sequence order is a range scan of one index.
		`CREATE INDEX IF NOT EXISTS audit_records_task ON audit_records (task_id, sequence)`,
		`CREATE INDEX IF NOT EXISTS audit_records_agent ON audit_records (agent_id, sequence)`,
		`CREATE INDEX IF NOT EXISTS audit_records_delegator ON audit_records (delegator_id, sequence)`,
		`CREATE INDEX IF NOT EXISTS audit_records_credential ON audit_records (credential_id, sequence)`,
		`CREATE INDEX IF NOT EXISTS audit_records_event_time ON audit_records (event_time)`,
		`CREATE TABLE IF NOT EXISTS audit_chain_head (
			id       INTEGER PRIMARY KEY CHECK (id = 1),
			sequence BIGINT NOT NULL,
			hash     TEXT NOT NULL
		)`,
		`INSERT INTO audit_chain_head (id, sequence, hash) VALUES (1, 0, '') ON CONFLICT (id) DO NOTHING`,
	}
}

// rebind turns ? placeholders into $n for PostgreSQL. The statements here
// hold no ? in literals, so a plain scan is enough.
func (s *Store) rebind(q string) string {
	if !s.d.numbered {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

const recordColumns = "sequence, event_id, event_time, event_type, task_id, agent_id, delegator_id, credential_id, event, recorded_at, prev_hash, hash"

const recordColumnCount = 12

// Append implements the audit store contract: under the chain-head lock it
// skips events already stored, links the rest with audit.Link and inserts
// them and the new head in one transaction.
func (s *Store) Append(ctx context.Context, recs []audit.Record) (audit.AppendResult, error) {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return audit.AppendResult{}, fmt.Errorf("sqlstore: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	var head audit.Head
	if err := tx.QueryRowContext(ctx, "SELECT sequence, hash FROM audit_chain_head WHERE id = 1"+s.d.lockHead).Scan(&head.Sequence, &head.Hash); err != nil {
		return audit.AppendResult{}, fmt.Errorf("sqlstore: read chain head: %w", err)
	}
	existing, err := s.existingIDs(ctx, tx, recs)
	if err != nil {
		return audit.AppendResult{}, err
	}
	var res audit.AppendResult
	fresh := make([]*audit.Record, 0, len(recs))
	for i := range recs {
		r := &recs[i]
		if _, dup := existing[r.EventID]; dup {
			res.Duplicates++
			continue
		}
		// A batch may hold the same event twice (published under two
		// message ids); only the first is recorded.
		existing[r.EventID] = struct{}{}
		head = audit.Link(head, r)
		fresh = append(fresh, r)
	}
	res.Stored = len(fresh)
	res.Head = head
	if len(fresh) == 0 {
		return res, nil
	}
	if err := s.insert(ctx, tx, fresh); err != nil {
		return audit.AppendResult{}, err
	}
	if _, err := tx.ExecContext(ctx, s.rebind("UPDATE audit_chain_head SET sequence = ?, hash = ? WHERE id = 1"), head.Sequence, head.Hash); err != nil {
		return audit.AppendResult{}, fmt.Errorf("sqlstore: move chain head: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return audit.AppendResult{}, fmt.Errorf("sqlstore: commit: %w", err)
	}
	return res, nil
}

func (s *Store) existingIDs(ctx context.Context, tx *sql.Tx, recs []audit.Record) (map[string]struct{}, error) {
	found := make(map[string]struct{}, len(recs))
	for start := 0; start < len(recs); start += s.d.maxParams {
		chunk := recs[start:min(len(recs), start+s.d.maxParams)]
		args := make([]any, len(chunk))
		for i := range chunk {
			args[i] = chunk[i].EventID
		}
		q := "SELECT event_id FROM audit_records WHERE event_id IN (" + placeholders(len(chunk)) + ")"
		rows, err := tx.QueryContext(ctx, s.rebind(q), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: look up event ids: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlstore: look up event ids: %w", err)
			}
			found[id] = struct{}{}
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("sqlstore: look up event ids: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlstore: look up event ids: %w", err)
		}
	}
	return found, nil
}

// insert writes recs with multi-row INSERTs: a round trip per chunk rather
// than per record matters on PostgreSQL.
func (s *Store) insert(ctx context.Context, tx *sql.Tx, recs []*audit.Record) error {
	perStmt := s.d.maxParams / recordColumnCount
	for start := 0; start < len(recs); start += perStmt {
		chunk := recs[start:min(len(recs), start+perStmt)]
		var q strings.Builder
		q.WriteString("INSERT INTO audit_records (" + recordColumns + ") VALUES ")
		row := "(" + placeholders(recordColumnCount) + ")"
		args := make([]any, 0, len(chunk)*recordColumnCount)
		for i, r := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString(row)
			args = append(args, r.Sequence, r.EventID, r.EventTime.UnixNano(), int32(r.Type), r.TaskID, r.AgentID,
				r.DelegatorID, r.CredentialID, r.Event, r.RecordedAt.UnixNano(), r.PrevHash, r.Hash)
		}
		if _, err := tx.ExecContext(ctx, s.rebind(q.String()), args...); err != nil {
			return fmt.Errorf("sqlstore: insert %d records: %w", len(chunk), err)
		}
	}
	return nil
}

func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// Head returns the end of the chain.
func (s *Store) Head(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	if err := s.db.QueryRowContext(ctx, "SELECT sequence, hash FROM audit_chain_head WHERE id = 1").Scan(&h.Sequence, &h.Hash); err != nil {
		return audit.Head{}, fmt.Errorf("%w: read chain head: %w", audit.ErrStoreUnavailable, err)
	}
	return h, nil
}

// Query returns the records matching q in sequence order.
func (s *Store) Query(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	var where strings.Builder
	args := make([]any, 0, 8)
	where.WriteString("sequence > ?")
	args = append(args, q.After)
	add := func(cond string, v any) {
		where.WriteString(" AND " + cond)
		args = append(args, v)
	}
	if q.Through > 0 {
		add("sequence <= ?", q.Through)
	}
	f := q.Filter
	if f.TaskID != "" {
		add("task_id = ?", f.TaskID)
	}
	if f.AgentID != "" {
		add("agent_id = ?", f.AgentID)
	}
	if f.DelegatorID != "" {
		add("delegator_id = ?", f.DelegatorID)
	}
	if f.CredentialID != "" {
		add("credential_id = ?", f.CredentialID)
	}
	if !f.Start.IsZero() {
		add("event_time >= ?", f.Start.UnixNano())
	}
	if !f.End.IsZero() {
		add("event_time < ?", f.End.UnixNano())
	}
	if len(f.Types) > 0 {
		where.WriteString(" AND event_type IN (" + placeholders(len(f.Types)) + ")")
		for _, t := range f.Types {
			args = append(args, int32(t))
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = audit.MaxPageSize
	}
	stmt := "SELECT " + recordColumns + " FROM audit_records WHERE " + where.String() + " ORDER BY sequence LIMIT " + strconv.Itoa(limit)
	rows, err := s.db.QueryContext(ctx, s.rebind(stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %w", audit.ErrStoreUnavailable, err)
	}
	defer rows.Close()
	recs := make([]audit.Record, 0, min(limit, 64))
	for rows.Next() {
		var (
			r                     audit.Record
			eventTime, recordedAt int64
			typ                   int32
		)
		if err := rows.Scan(&r.Sequence, &r.EventID, &eventTime, &typ, &r.TaskID, &r.AgentID, &r.DelegatorID,
			&r.CredentialID, &r.Event, &recordedAt, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("sqlstore: scan record: %w", err)
		}
		r.EventTime = time.Unix(0, eventTime).UTC()
		r.RecordedAt = time.Unix(0, recordedAt).UTC()
		r.Type = eventsv1.EventType(typ)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: query: %w", audit.ErrStoreUnavailable, err)
	}
	return recs, nil
}
