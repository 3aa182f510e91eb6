package audit

import (
	"context"
	"fmt"
)

// verifyChunk is how many records the walk holds in memory at once.
const verifyChunk = 1000

// Verification is the outcome of a walk over the hash chain.
type Verification struct {
	OK bool
	// Checked counts the records read, including a bad one.
	Checked int64
	// FirstBad is the sequence of the first record that does not verify
	// (for a missing record, the sequence that is missing); 0 when OK.
	FirstBad int64
	// Problem says what is wrong, in words an operator can act on.
	Problem string
}

// chainWalker checks records one by one, in sequence order, against the
// record before.
type chainWalker struct {
	prev    Head
	checked int64
}

// check returns a failed Verification for r, or ok == true when r follows
// the chain.
func (w *chainWalker) check(r *Record) (Verification, bool) {
	w.checked++
	want := w.prev.Sequence + 1
	switch {
	case r.Sequence != want:
		return w.bad(want, fmt.Sprintf("sequence gap: record %d is missing (the record after %d is %d); a record was deleted or renumbered", want, w.prev.Sequence, r.Sequence)), false
	case r.PrevHash != w.prev.Hash:
		return w.bad(r.Sequence, fmt.Sprintf("prev_hash of record %d does not match the hash of record %d: a record before it was removed, replaced or reordered", r.Sequence, w.prev.Sequence)), false
	case Hash(r) != r.Hash:
		return w.bad(r.Sequence, fmt.Sprintf("hash mismatch: record %d (event %s) does not match its stored hash; it was edited after it was written", r.Sequence, r.EventID)), false
	}
	w.prev = Head{Sequence: r.Sequence, Hash: r.Hash}
	return Verification{}, true
}

func (w *chainWalker) bad(seq int64, problem string) Verification {
	return Verification{Checked: w.checked, FirstBad: seq, Problem: problem}
}

// Verify walks the chain from the first record to the chain head read at
// the start, a chunk at a time so that memory stays bounded however long
// the log is. Records appended during the walk are left for the next one.
// The head is checked too, so records dropped from the end are found.
func (s *Service) Verify(ctx context.Context) (Verification, error) {
	head, err := s.store.Head(ctx)
	if err != nil {
		return Verification{}, err
	}
	var w chainWalker
	for w.prev.Sequence < head.Sequence {
		recs, err := s.store.Query(ctx, Query{After: w.prev.Sequence, Through: head.Sequence, Limit: verifyChunk})
		if err != nil {
			return Verification{}, err
		}
		if len(recs) == 0 {
			break
		}
		for i := range recs {
			if v, ok := w.check(&recs[i]); !ok {
				return v, nil
			}
		}
	}
	switch {
	case w.prev.Sequence < head.Sequence:
		return w.bad(w.prev.Sequence+1, fmt.Sprintf("records %d to %d are missing: the chain head says the log ends at %d", w.prev.Sequence+1, head.Sequence, head.Sequence)), nil
	case w.prev.Hash != head.Hash:
		return w.bad(head.Sequence, fmt.Sprintf("hash of the last record %d does not match the chain head: the end of the log was rewritten", head.Sequence)), nil
	}
	return Verification{OK: true, Checked: w.checked}, nil
}
