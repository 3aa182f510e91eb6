package audit

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

const (
	// DefaultPageSize is the page size of a query that names none.
	DefaultPageSize = 100
	// MaxPageSize bounds a page so that one call cannot pull the whole log
	// into memory.
	MaxPageSize = 1000
)

// Filter selects records; zero fields match everything. Start is
// inclusive and End exclusive, both on the event time.
type Filter struct {
	TaskID       string
	AgentID      string
	DelegatorID  string
	CredentialID string
	Types        []eventsv1.EventType
	Start        time.Time
	End          time.Time
}

// Validate reports a filter that cannot be what the caller meant.
func (f Filter) Validate() error {
	for _, t := range f.Types {
		if _, ok := eventsv1.EventType_name[int32(t)]; !ok || t == eventsv1.EventType_EVENT_TYPE_UNSPECIFIED {
			return fmt.Errorf("%w: types: unknown event type %d", ErrInvalidFilter, t)
		}
	}
	if !f.Start.IsZero() && !f.End.IsZero() && f.End.Before(f.Start) {
		return fmt.Errorf("%w: end_time %s is before start_time %s", ErrInvalidFilter,
			f.End.UTC().Format(time.RFC3339Nano), f.Start.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Query is what the domain asks of the store: records matching Filter with
// a sequence above After (and at most Through, when not zero), in sequence
// order, at most Limit of them.
type Query struct {
	Filter  Filter
	After   int64
	Through int64
	Limit   int
}

// PageRequest asks for one page of QueryEvents.
type PageRequest struct {
	Filter Filter
	// PageSize is DefaultPageSize when zero.
	PageSize int
	// PageToken is the NextPageToken of the previous page, or empty.
	PageToken string
}

// Page is one page of records, oldest first.
type Page struct {
	Records []Record
	// NextPageToken is empty on the last page.
	NextPageToken string
}

// pageTokenPrefix versions the token so that its form can change without
// old tokens being misread.
const pageTokenPrefix = "seq1:"

// encodePageToken returns the opaque token for a page that starts after seq.
// Sequences are stable and never reused, so a token stays valid however
// many records are appended between pages.
func encodePageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.FormatInt(seq, 10)))
}

func decodePageToken(tok string) (int64, error) {
	if tok == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, fmt.Errorf("%w: not base64url", ErrInvalidPageToken)
	}
	s, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if !ok {
		return 0, fmt.Errorf("%w: unknown form", ErrInvalidPageToken)
	}
	seq, err := strconv.ParseInt(s, 10, 64)
	if err != nil || seq < 1 {
		return 0, fmt.Errorf("%w: bad sequence", ErrInvalidPageToken)
	}
	return seq, nil
}
