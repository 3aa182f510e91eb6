package audit_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/audit/internal/audit"
)

func sampleRecord(t *testing.T) audit.Record {
	t.Helper()
	at := time.Date(2026, 11, 29, 10, 0, 0, 1, time.UTC)
	r, err := audit.NewRecord(&eventsv1.LifecycleEvent{
		Id:           "evt-1",
		Type:         eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time:         timestamppb.New(at),
		CredentialId: "cred-1",
		Agent:        &identityv1.Agent{Id: "agent-1"},
		Delegator:    &identityv1.Delegator{Id: "user:alice"},
		Task:         &identityv1.Task{Id: "task-1"},
	}, at.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	audit.Link(audit.Head{Sequence: 6, Hash: "ab"}, &r)
	return r
}

// TestHashCoversEveryColumn is what makes an edit of any stored column
// visible to VerifyLog.
func TestHashCoversEveryColumn(t *testing.T) {
	t.Parallel()
	base := sampleRecord(t)
	if base.Sequence != 7 || base.PrevHash != "ab" || base.Hash != audit.Hash(&base) || len(base.Hash) != 64 {
		t.Fatalf("Link() gave %+v", base)
	}
	tests := []struct {
		name string
		edit func(r *audit.Record)
	}{
		{"sequence", func(r *audit.Record) { r.Sequence++ }},
		{"prev_hash", func(r *audit.Record) { r.PrevHash = "ac" }},
		{"event_id", func(r *audit.Record) { r.EventID = "evt-2" }},
		{"event_time", func(r *audit.Record) { r.EventTime = r.EventTime.Add(time.Nanosecond) }},
		{"type", func(r *audit.Record) { r.Type = eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED }},
		{"task_id", func(r *audit.Record) { r.TaskID = "task-2" }},
		{"agent_id", func(r *audit.Record) { r.AgentID = "agent-2" }},
		{"delegator_id", func(r *audit.Record) { r.DelegatorID = "user:bob" }},
		{"credential_id", func(r *audit.Record) { r.CredentialID = "cred-2" }},
		{"recorded_at", func(r *audit.Record) { r.RecordedAt = r.RecordedAt.Add(-time.Nanosecond) }},
		{"event bytes", func(r *audit.Record) { r.Event = append(append([]byte(nil), r.Event...), 0) }},
		// Length prefixes: moving a byte between adjacent columns is
		// still a change.
		{"bytes moved between columns", func(r *audit.Record) { r.TaskID, r.AgentID = "task-1a", "gent-1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := sampleRecord(t)
			tt.edit(&r)
			if audit.Hash(&r) == base.Hash {
				t.Errorf("editing %s left the hash unchanged", tt.name)
			}
		})
	}
}

func TestNewRecordRejectsEventWithoutID(t *testing.T) {
	t.Parallel()
	if _, err := audit.NewRecord(&eventsv1.LifecycleEvent{}, time.Now()); !errors.Is(err, audit.ErrInvalidEvent) {
		t.Errorf("NewRecord(no id) error = %v, want ErrInvalidEvent", err)
	}
}

// TestHashGolden pins the encoding (the value was computed independently
// from the documented encoding, outside Go): a change to Hash would make every
// stored log fail verification, so it must be deliberate (a new domain
// tag), never accidental.
func TestHashGolden(t *testing.T) {
	t.Parallel()
	r := audit.Record{
		Sequence: 1, EventID: "e", EventTime: time.Unix(0, 5).UTC(), Type: 1,
		TaskID: "t", AgentID: "a", DelegatorID: "d", CredentialID: "c",
		Event: []byte{1, 2, 3}, RecordedAt: time.Unix(0, 9).UTC(),
	}
	const want = "bf5a079748a6c481950a7a1af992cf208f963111d4b2b75a6b5b7af5be624f9a"
	if got := audit.Hash(&r); got != want {
		t.Errorf("Hash() = %s, want %s", got, want)
	}
}
