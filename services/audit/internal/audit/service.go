package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// store is what the Service needs from storage. Append assigns sequences
// and hashes with Link under a lock that serializes every appender of the
// log (other replicas included), skips records whose event id is already
// stored, and commits the batch atomically.
type store interface {
	Append(ctx context.Context, recs []Record) (AppendResult, error)
	Query(ctx context.Context, q Query) ([]Record, error)
	Head(ctx context.Context) (Head, error)
}

// AppendResult reports what one Append did.
type AppendResult struct {
	// Stored counts new records.
	Stored int
	// Duplicates counts events skipped because their id was already in
	// the log (or earlier in the same batch).
	Duplicates int
	// Head is the end of the chain after the append.
	Head Head
}

// Options configure a Service. The zero value is usable.
type Options struct {
	// Clock stamps recorded_at; time.Now when nil. Tests fix it.
	Clock func() time.Time
	// TailPollInterval is how often a tail looks at the store even without
	// a local append, to see records written by other replicas; 1s when
	// zero.
	TailPollInterval time.Duration
	Logger           *slog.Logger
}

// Service records lifecycle events in the hash-chained log and answers
// queries, tails and verification over it.
type Service struct {
	store store
	now   func() time.Time
	poll  time.Duration
	log   *slog.Logger

	mu sync.Mutex
	// changed is closed and replaced after every append that stored
	// something, waking every tail at once without a queue per tail.
	changed chan struct{}
}

// New returns a Service over st.
func New(st store, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.TailPollInterval <= 0 {
		opts.TailPollInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{store: st, now: opts.Clock, poll: opts.TailPollInterval, log: opts.Logger, changed: make(chan struct{})}
}

// Append records events in one atomic step, in the order given. An event
// already in the log is skipped, never recorded twice, so redelivery is
// harmless. Either every new event is committed or none is.
func (s *Service) Append(ctx context.Context, events []*eventsv1.LifecycleEvent) (AppendResult, error) {
	if len(events) == 0 {
		return AppendResult{}, nil
	}
	at := s.now()
	recs := make([]Record, 0, len(events))
	for _, ev := range events {
		r, err := NewRecord(ev, at)
		if err != nil {
			return AppendResult{}, err
		}
		recs = append(recs, r)
	}
	res, err := s.store.Append(ctx, recs)
	if err != nil {
		return AppendResult{}, fmt.Errorf("audit: append %d events: %w", len(recs), err)
	}
	if res.Stored > 0 {
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	return res, nil
}

func (s *Service) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// QueryEvents returns one page of records matching the request's filter.
func (s *Service) QueryEvents(ctx context.Context, req PageRequest) (Page, error) {
	if err := req.Filter.Validate(); err != nil {
		return Page{}, err
	}
	size := req.PageSize
	switch {
	case size == 0:
		size = DefaultPageSize
	case size < 0 || size > MaxPageSize:
		return Page{}, fmt.Errorf("%w: page_size %d is outside 0..%d", ErrInvalidPageSize, size, MaxPageSize)
	}
	after, err := decodePageToken(req.PageToken)
	if err != nil {
		return Page{}, err
	}
	// One more than asked tells whether there is a next page without a
	// second query.
	recs, err := s.store.Query(ctx, Query{Filter: req.Filter, After: after, Limit: size + 1})
	if err != nil {
		return Page{}, err
	}
	var page Page
	if len(recs) > size {
		recs = recs[:size]
		page.NextPageToken = encodePageToken(recs[size-1].Sequence)
	}
	page.Records = recs
	return page, nil
}

// tailChunk bounds the records one tail holds in memory at once.
const tailChunk = 500

// Tail sends the records matching f that come after sequence after, then
// every new matching record as it is committed, until ctx ends or send
// fails. after == 0 starts at the next record written. New records are
// seen at once when this process appended them, and within the poll
// interval when another replica did.
//
// started, when not nil, is called once with the sequence the tail starts
// after, before any record is sent: a client that waits for it knows that
// every record written from then on reaches it.
func (s *Service) Tail(ctx context.Context, f Filter, after int64, started func(after int64) error, send func(*Record) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if after < 0 {
		return fmt.Errorf("%w: after_sequence %d is negative", ErrInvalidSequence, after)
	}
	if after == 0 {
		head, err := s.store.Head(ctx)
		if err != nil {
			return err
		}
		after = head.Sequence
	}
	if started != nil {
		if err := started(after); err != nil {
			return err
		}
	}
	ticker := time.NewTicker(s.poll)
	defer ticker.Stop()
	for {
		// Take the channel before reading, so that an append committed
		// while we read still wakes us.
		changed := s.changes()
		// Reading up to the head, then moving the cursor to it, means a
		// selective filter does not rescan the same non-matching records
		// on every wake-up. Records up to the head are committed, since
		// the head moves in the same transaction as the records.
		head, err := s.store.Head(ctx)
		if err != nil {
			return err
		}
		for after < head.Sequence {
			recs, err := s.store.Query(ctx, Query{Filter: f, After: after, Through: head.Sequence, Limit: tailChunk})
			if err != nil {
				return err
			}
			for i := range recs {
				if err := send(&recs[i]); err != nil {
					return err
				}
			}
			if len(recs) < tailChunk {
				after = head.Sequence
				break
			}
			after = recs[len(recs)-1].Sequence
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-ticker.C:
		}
	}
}
