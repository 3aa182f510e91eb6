package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/testkit"
)

// issueMany issues n credentials for one delegator across tasks (so across
// shards), a few at a time, and fails the test on any error.
func (s *stack) issueMany(t testing.TB, n int, delegator, tag string) []*issuedCred {
	t.Helper()
	return s.issueManyThen(t, n, delegator, tag, nil)
}

// issueManyThen is issueMany that calls after (when not nil) with the
// number issued so far after each success, from the issuing goroutines.
func (s *stack) issueManyThen(t testing.TB, n int, delegator, tag string, after func(issued int64)) []*issuedCred {
	t.Helper()
	var issued atomic.Int64
	creds := make([]*issuedCred, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := s.party(fmt.Sprintf("%s-%d", tag, i)).request()
			r.Delegator.Id = delegator
			r.Task.Id = fmt.Sprintf("task-%s-%s-%d", s.ns, tag, i%10)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := s.issuer.IssueCredential(ctx, r)
			creds[i], errs[i] = &issuedCred{Credential: resp.GetCredential(), token: resp.GetToken()}, err
			if err == nil && after != nil {
				after(issued.Add(1))
			}
		})
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("IssueCredential #%d: %v", i, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d issuances failed", failed, n)
	}
	return creds
}

// expectIssuedOnce waits until the audit log holds exactly the issued
// events of creds for delegator, each once, and stays so.
func (s *stack) expectIssuedOnce(t testing.TB, delegator string, creds []*issuedCred, timeout time.Duration) {
	t.Helper()
	filter := &auditv1.EventFilter{DelegatorId: delegator, Types: []eventsv1.EventType{evIssued}}
	var recs []*auditv1.AuditRecord
	testkit.Eventually(t, fmt.Sprintf("%d issued events in the audit log", len(creds)), timeout, 100*time.Millisecond, func() (int, bool) {
		recs = s.eventsNow(filter)
		return len(recs), len(recs) >= len(creds)
	})
	holdsFor(1500*time.Millisecond, func() bool {
		recs = s.eventsNow(filter)
		return len(recs) == len(creds)
	})
	if len(recs) != len(creds) {
		t.Errorf("issued events for %s: %d; want %d", delegator, len(recs), len(creds))
	}
	if n := distinctEventIDs(recs); n != len(creds) {
		t.Errorf("issued events for %s: %d distinct event ids; want %d", delegator, n, len(creds))
	}
	want := map[string]int{}
	for _, c := range creds {
		want[c.GetId()] = 1
	}
	if diff := cmp.Diff(want, countBy(recs)); diff != "" {
		t.Errorf("issued events per credential (-want +got):\n%s", diff)
	}
}

// TestNATSOutage proves that issuance does not depend on NATS (the outbox
// is in Redis) and that events written while NATS was down reach the audit
// log once it is back, each exactly once.
func TestNATSOutage(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})

	// Warm up: the stream and audit's durable consumer exist and work.
	warm := s.party("warm")
	s.expectIssuedOnce(t, warm.delegator, []*issuedCred{s.issue(t, warm.request())}, 15*time.Second)

	// NATS stops while the 100 are being issued, so some events are being
	// published at that moment (unknown outcomes, to be retried) and the
	// rest wait in the outbox.
	delegator := "user:" + s.ns + "-outage@example.com"
	var stopOnce sync.Once
	stopped := make(chan struct{})
	creds := s.issueManyThen(t, 100, delegator, "outage", func(issued int64) {
		if issued >= 25 {
			stopOnce.Do(func() { go func() { s.StopNATS(); close(stopped) }() })
		}
	})
	<-stopped
	t.Logf("NATS stopped with %d of 100 issued events in the audit log", len(s.eventsNow(&auditv1.EventFilter{DelegatorId: delegator})))
	if keys := s.credKeys(t, "*"); len(keys) != 101 {
		t.Errorf("credential keys in Redis during the outage: %d; want 101", len(keys))
	}

	s.StartNATS()
	back := time.Now()
	// Events JetStream had handed audit but saw no ack for before it went
	// down come back after audit's consumer AckWait (30s), hence the wait.
	s.expectIssuedOnce(t, delegator, creds, 60*time.Second)
	t.Logf("all 100 recorded %v after NATS came back", time.Since(back).Round(100*time.Millisecond))
	all := s.mustEvents(t, &auditv1.EventFilter{})
	if n := distinctEventIDs(all); n != len(all) || len(all) != 101 {
		t.Errorf("audit log: %d records, %d distinct event ids; want 101 and 101", len(all), n)
	}
	checkSequences(t, all)
	// Delivered events leave the outbox.
	waitFor(t, 10*time.Second, "empty outboxes after delivery", func() bool { return s.outboxLen(t) == 0 })

	// The outbox outlives the issuer process too: events written while
	// NATS is down, by an issuer that is then stopped, are relayed by its
	// successor once NATS is back.
	s.StopNATS()
	delegator2 := "user:" + s.ns + "-outage2@example.com"
	creds2 := s.issueMany(t, 20, delegator2, "outage2")
	// The events stay in the outbox for as long as NATS is down, past the
	// relay's publish timeout (5s): a relay that counted an unanswered
	// publish as done would drop them here, and the nats.go reconnect
	// buffer that might still have carried them dies with the process.
	var outbox int64
	if !holdsFor(7*time.Second, func() bool { outbox = s.outboxLen(t); return outbox >= int64(len(creds2)) }) {
		t.Errorf("outbox entries with NATS down: %d; want at least %d until NATS is back", outbox, len(creds2))
	}
	s.issuers[0].Stop()
	if n := s.outboxLen(t); n < int64(len(creds2)) {
		t.Errorf("outbox entries with NATS down and the issuer stopped: %d; want at least %d", n, len(creds2))
	}
	s.StartNATS()
	s.issuers[0].Start()
	back = time.Now()
	s.expectIssuedOnce(t, delegator2, creds2, 60*time.Second)
	t.Logf("all 20 recorded %v after NATS and the issuer came back", time.Since(back).Round(100*time.Millisecond))
	all = s.mustEvents(t, &auditv1.EventFilter{})
	if n := distinctEventIDs(all); n != len(all) || len(all) != 121 {
		t.Errorf("audit log: %d records, %d distinct event ids; want 121 and 121", len(all), n)
	}
	waitFor(t, 10*time.Second, "empty outboxes after delivery", func() bool { return s.outboxLen(t) == 0 })
}

// outboxLen counts the entries of every outbox stream of the stack.
func (s *stack) outboxLen(t testing.TB) int64 {
	t.Helper()
	var n int64
	for _, key := range s.scan(t, s.ns+":{*}:outbox") {
		l, err := s.rdb.XLen(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("XLEN %s: %v", key, err)
		}
		n += l
	}
	return n
}
