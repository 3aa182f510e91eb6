// Package audit is the domain of jitid's audit log: the record, the hash
// chain that makes the log tamper evident, the walk that verifies it, and the
// Service that the gRPC API and the NATS consumer use. It knows nothing of
// gRPC, NATS or SQL drivers; storage comes in through a small interface.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// Record is one stored event, chained to the record before it. The id
// columns are copies of fields of Event kept so that queries can use
// indexes; the hash covers them as well as Event, so editing either is found.
type Record struct {
	// Sequence numbers records from 1 with no gaps.
	Sequence int64
	// EventID is the lifecycle event's id; unique in the log.
	EventID string
	// EventTime is when the event happened (the event's own time), UTC.
	EventTime time.Time
	Type      eventsv1.EventType
	TaskID    string
	AgentID   string
	// DelegatorID names the human or parent agent whose authority was used.
	DelegatorID  string
	CredentialID string
	// Event is the lifecycle event in deterministic protobuf encoding. The
	// bytes, not a re-encoding, are what the hash covers, so they are kept
	// as they were at insert time.
	Event []byte
	// RecordedAt is when the audit service stored the record, UTC.
	RecordedAt time.Time
	// PrevHash is the Hash of the record before; empty for the first.
	PrevHash string
	// Hash is the hex SHA-256 of the record's canonical encoding (see Hash).
	Hash string
}

// Head is the end of the chain: the last sequence and its hash. The zero
// Head is an empty log.
type Head struct {
	Sequence int64
	Hash     string
}

// deterministic marshalling gives the same bytes for the same event within
// one binary, which is what the idempotent insert and the benchmark rely
// on. Verification never re-marshals: it hashes the stored bytes.
var deterministic = proto.MarshalOptions{Deterministic: true}

// NewRecord returns the unchained record of ev: every column but Sequence,
// PrevHash and Hash, which the store assigns under its append lock with
// Link.
func NewRecord(ev *eventsv1.LifecycleEvent, recordedAt time.Time) (Record, error) {
	if ev.GetId() == "" {
		return Record{}, fmt.Errorf("%w: no event id", ErrInvalidEvent)
	}
	b, err := deterministic.Marshal(ev)
	if err != nil {
		return Record{}, fmt.Errorf("%w: event %s: %v", ErrInvalidEvent, ev.GetId(), err) //nolint:errorlint // the sentinel is what callers match; the cause is detail
	}
	var at time.Time
	if ev.GetTime() != nil {
		at = ev.GetTime().AsTime()
	}
	return Record{
		EventID:      ev.GetId(),
		EventTime:    normalize(at),
		Type:         ev.GetType(),
		TaskID:       ev.GetTask().GetId(),
		AgentID:      ev.GetAgent().GetId(),
		DelegatorID:  ev.GetDelegator().GetId(),
		CredentialID: ev.GetCredentialId(),
		Event:        b,
		RecordedAt:   normalize(recordedAt),
	}, nil
}

// normalize keeps times as the store keeps them (UTC nanoseconds since the
// Unix epoch) so that a record hashes the same before and after a round
// trip through the store. The zero time is stored as 0.
func normalize(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return time.Unix(0, t.UnixNano()).UTC()
}

// Link places r after head: it sets the sequence, the previous hash and
// the record's own hash, and returns the new head.
func Link(head Head, r *Record) Head {
	r.Sequence = head.Sequence + 1
	r.PrevHash = head.Hash
	r.Hash = Hash(r)
	return Head{Sequence: r.Sequence, Hash: r.Hash}
}

// hashDomain separates this hash from any other SHA-256 in the system, and
// names the encoding version: a new encoding gets a new tag.
const hashDomain = "jitid.audit.v1.record\x00"

// Hash returns the hex SHA-256 of r's canonical encoding: the domain tag,
// then every stored column except Hash, in a fixed order, each integer as
// 8 bytes big-endian and each string or byte slice as its 8-byte length
// followed by its bytes. Length prefixes make the encoding unambiguous, so
// moving bytes from one column to another changes the hash.
func Hash(r *Record) string {
	h := sha256.New()
	var buf [8]byte
	putInt := func(v int64) {
		binary.BigEndian.PutUint64(buf[:], uint64(v))
		h.Write(buf[:])
	}
	putStr := func(s string) {
		putInt(int64(len(s)))
		_, _ = io.WriteString(h, s) // avoids a []byte copy of every column
	}
	_, _ = io.WriteString(h, hashDomain)
	putInt(r.Sequence)
	putStr(r.PrevHash)
	putStr(r.EventID)
	putInt(r.EventTime.UnixNano())
	putInt(int64(r.Type))
	putStr(r.TaskID)
	putStr(r.AgentID)
	putStr(r.DelegatorID)
	putStr(r.CredentialID)
	putInt(r.RecordedAt.UnixNano())
	putInt(int64(len(r.Event)))
	h.Write(r.Event)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// DecodeEvent returns the lifecycle event held in r.
func (r *Record) DecodeEvent() (*eventsv1.LifecycleEvent, error) {
	ev := &eventsv1.LifecycleEvent{}
	if err := proto.Unmarshal(r.Event, ev); err != nil {
		return nil, fmt.Errorf("audit: record %d: decode event: %w", r.Sequence, err)
	}
	return ev, nil
}
