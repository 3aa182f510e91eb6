package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/testkit"
)

func (s *stack) verifyLog(t testing.TB) *auditv1.VerifyLogResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.auditor.VerifyLog(ctx, &auditv1.VerifyLogRequest{})
	if err != nil {
		t.Fatalf("VerifyLog: %v", err)
	}
	return resp
}

// TestAuditRestartAndTamper proves that events produced while audit is down
// are recorded once it is back, none missing and none twice, that the chain
// then verifies, and that an edited record is named by VerifyLog.
func TestAuditRestartAndTamper(t *testing.T) {
	t.Parallel()
	// A burst of 150 live credentials for one delegator: past the default
	// delegator quota (100), which this test is not about.
	s := startStack(t, stackOptions{issuerArgs: []string{"-delegator-quota", "0"}})
	delegator := "user:" + s.ns + "-audit@example.com"

	before := s.issueMany(t, 10, delegator, "before")
	s.expectIssuedOnce(t, delegator, before, 15*time.Second)

	s.audit.Stop()
	// Events keep flowing while audit is down: issuance and revocation.
	during := s.issueMany(t, 20, delegator, "during")
	task := during[0].GetTaskId()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := s.issuer.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_TaskId{TaskId: task}, Reason: "e2e: revoked while audit was down",
	})
	if err != nil {
		t.Fatalf("RevokeCredentials while audit is down: %v", err)
	}
	if rev.GetRevoked() == 0 {
		t.Fatalf("RevokeCredentials(task %s) revoked nothing", task)
	}
	s.audit.Start()

	issued := append(append([]*issuedCred{}, before...), during...)
	s.expectIssuedOnce(t, delegator, issued, 30*time.Second)
	s.expectOncePerCredential(t, evRevoked, sorted(rev.GetCredentialIds()))

	// Audit killed (SIGKILL, no graceful shutdown) while it is consuming:
	// what it had not committed is redelivered, what it had is not
	// recorded twice.
	killed := "user:" + s.ns + "-killed@example.com"
	killFilter := &auditv1.EventFilter{DelegatorId: killed}
	killDone := make(chan int)
	go func() {
		// Killed after the timeout too: the test then checks a kill before
		// any commit.
		n, _ := testkit.Poll("the first event of the burst in the audit log", 20*time.Second, 5*time.Millisecond, func() (int, bool) {
			n := len(s.eventsNow(killFilter))
			return n, n > 0
		})
		s.audit.Kill()
		killDone <- n
	}()
	burst := s.issueMany(t, 150, killed, "killed")
	t.Logf("audit killed after recording %d of %d events", <-killDone, len(burst))
	s.audit.Start()
	// Messages the killed consumer had been handed but not acked come back
	// after the consumer's AckWait (30s in the audit service), hence the
	// long wait.
	restarted := time.Now()
	s.expectIssuedOnce(t, killed, burst, 60*time.Second)
	t.Logf("all %d events recorded %v after audit came back", len(burst), time.Since(restarted).Round(100*time.Millisecond))

	all := s.mustEvents(t, &auditv1.EventFilter{})
	wantRecords := len(issued) + len(rev.GetCredentialIds()) + len(burst)
	if len(all) != wantRecords {
		t.Errorf("audit log has %d records; want %d (%d + %d issued, %d revoked)", len(all), wantRecords, len(issued), len(burst), len(rev.GetCredentialIds()))
	}
	if n := distinctEventIDs(all); n != len(all) {
		t.Errorf("audit log has %d records but %d distinct event ids", len(all), n)
	}
	checkSequences(t, all)
	if v := s.verifyLog(t); !v.GetOk() || v.GetRecordsChecked() != int64(len(all)) || v.GetFirstBadSequence() != 0 {
		t.Fatalf("VerifyLog on an untouched log = %v; want ok, %d records checked", v, len(all))
	}

	// Tamper: change the delegator of one record in the middle, in the
	// store itself, with audit stopped.
	var mine []*auditv1.AuditRecord
	for _, r := range all {
		if r.GetEvent().GetDelegator().GetId() == delegator {
			mine = append(mine, r)
		}
	}
	victim := mine[len(mine)/2]
	if victim.GetEvent().GetDelegator().GetId() != delegator {
		t.Fatalf("record %d has delegator %q; want %q", victim.GetSequence(), victim.GetEvent().GetDelegator().GetId(), delegator)
	}
	s.audit.Stop()
	forged := strings.Replace(delegator, "@example.com", "@exampl3.com", 1) // same length: the row stays decodable
	tamperRecord(t, s.auditDB, victim.GetSequence(), delegator, forged)
	s.audit.Start()

	v := s.verifyLog(t)
	if v.GetOk() || v.GetFirstBadSequence() != victim.GetSequence() {
		t.Errorf("VerifyLog after editing record %d = ok %v, first_bad_sequence %d (%q); want not ok, %d",
			victim.GetSequence(), v.GetOk(), v.GetFirstBadSequence(), v.GetProblem(), victim.GetSequence())
	}
	if v.GetProblem() == "" && !v.GetOk() {
		t.Errorf("VerifyLog names record %d without saying what is wrong", v.GetFirstBadSequence())
	}

	// Undo the edit: the chain verifies again (VerifyLog walks the store,
	// it does not remember). Then drop a later record: VerifyLog names the
	// gap, at the dropped record or the one after it.
	s.audit.Stop()
	tamperRecord(t, s.auditDB, victim.GetSequence(), forged, delegator)
	s.audit.Start()
	if v := s.verifyLog(t); !v.GetOk() {
		t.Errorf("VerifyLog after undoing the edit = %v; want ok", v)
	}
	dropped := all[len(all)*3/4].GetSequence()
	s.audit.Stop()
	deleteRecord(t, s.auditDB, dropped)
	s.audit.Start()
	v = s.verifyLog(t)
	if v.GetOk() || (v.GetFirstBadSequence() != dropped && v.GetFirstBadSequence() != dropped+1) {
		t.Errorf("VerifyLog after dropping record %d = ok %v, first_bad_sequence %d (%q); want not ok, %d or %d",
			dropped, v.GetOk(), v.GetFirstBadSequence(), v.GetProblem(), dropped, dropped+1)
	}
}

// deleteRecord removes the record with the given sequence from the audit
// SQLite file.
func deleteRecord(t testing.TB, path string, sequence int64) {
	t.Helper()
	db, table, seqCol, _ := openRecords(t, path)
	defer db.Close()
	res, err := db.Exec(fmt.Sprintf(`DELETE FROM %s WHERE %s = ?`, quoteIdent(table), quoteIdent(seqCol)), sequence)
	if err != nil {
		t.Fatalf("delete record %d: %v", sequence, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("delete record %d: %d rows deleted", sequence, n)
	}
	t.Logf("deleted record %d from %s", sequence, table)
}

// tamperRecord rewrites, in the audit SQLite file, every text or blob column
// of the record with the given sequence that contains old, replacing it
// with repl (the same length, so a protobuf or JSON column stays well
// formed). It knows nothing of the schema beyond a column named sequence.
func tamperRecord(t testing.TB, path string, sequence int64, old, repl string) {
	t.Helper()
	if len(old) != len(repl) {
		t.Fatalf("tamperRecord: %q and %q differ in length", old, repl)
	}
	db, table, seqCol, cols := openRecords(t, path)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	row := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range row {
		ptrs[i] = &row[i]
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = quoteIdent(c)
	}
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE %s = ?`, strings.Join(quoted, ", "), quoteIdent(table), quoteIdent(seqCol))
	if err := db.QueryRowContext(ctx, q, sequence).Scan(ptrs...); err != nil {
		t.Fatalf("read record %d from %s: %v", sequence, table, err)
	}
	changed := 0
	for i, v := range row {
		var b []byte
		switch x := v.(type) {
		case string:
			b = []byte(x)
		case []byte:
			b = x
		default:
			continue
		}
		if !bytes.Contains(b, []byte(old)) {
			continue
		}
		nb := bytes.ReplaceAll(b, []byte(old), []byte(repl))
		var nv any = nb
		if _, ok := v.(string); ok {
			nv = string(nb)
		}
		u := fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s = ?`, quoteIdent(table), quoted[i], quoteIdent(seqCol))
		res, err := db.ExecContext(ctx, u, nv, sequence)
		if err != nil {
			t.Fatalf("tamper %s.%s of record %d: %v", table, cols[i], sequence, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("tamper %s.%s of record %d: %d rows changed", table, cols[i], sequence, n)
		}
		t.Logf("tampered with %s.%s of record %d: %q → %q", table, cols[i], sequence, old, repl)
		changed++
	}
	if changed == 0 {
		t.Fatalf("record %d of %s holds %q in no column", sequence, table, old)
	}
}

func queryStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLit(s string) string   { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// openRecords opens the audit SQLite file and finds the table of records:
// the table with a sequence column and the most rows (others, like a chain
// head, may have a sequence column too). It knows nothing else of the schema.
func openRecords(t testing.TB, path string) (db *sql.DB, table, seqCol string, cols []string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tables, err := queryStrings(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	most := int64(-1)
	for _, tb := range tables {
		c, err := queryStrings(ctx, db, fmt.Sprintf(`SELECT name FROM pragma_table_info(%s)`, quoteLit(tb)))
		if err != nil {
			t.Fatalf("columns of %s: %v", tb, err)
		}
		for _, name := range c {
			if !strings.EqualFold(name, "sequence") && !strings.EqualFold(name, "seq") {
				continue
			}
			var n int64
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+quoteIdent(tb)).Scan(&n); err != nil {
				t.Fatalf("count rows of %s: %v", tb, err)
			}
			if n > most {
				table, cols, most = tb, c, n
			}
		}
	}
	if table == "" {
		t.Fatalf("no table with a sequence column among %v", tables)
	}
	seqCol = "sequence"
	for _, c := range cols {
		if strings.EqualFold(c, "seq") {
			seqCol = c
		}
	}
	return db, table, seqCol, cols
}
