package e2e_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	"github.com/jitid/jitid/testkit"
)

// TestExpiry proves that expiry is an event: a short-lived credential is
// reported expired within 2s of its expiry, exactly once, although two
// issuer replicas sweep the same Redis.
func TestExpiry(t *testing.T) {
	t.Parallel()
	// A short sweep interval makes the two replicas race for every
	// credential, which is what exactly-once has to survive.
	s := startStack(t, stackOptions{issuers: 2, sweepInterval: 100 * time.Millisecond})

	const perIssuer = 4
	var creds []*issuedCred
	for i, client := range s.issuerAll {
		for j := 0; j < perIssuer; j++ {
			r := s.party(fmt.Sprintf("exp-%d-%d", i, j)).request()
			r.Ttl = durationpb.New(2 * time.Second)
			creds = append(creds, s.issueVia(t, client, r))
		}
	}
	ids := credIDs(creds...)
	latest := time.Time{}
	for _, c := range creds {
		if life := c.GetExpireTime().AsTime().Sub(c.GetIssueTime().AsTime()); life > 2*time.Second {
			t.Errorf("credential %s lives %v; asked for 2s", c.GetId(), life)
		}
		if e := c.GetExpireTime().AsTime(); e.After(latest) {
			latest = e
		}
	}

	// Reported within 2s of expiry, plus the relay and audit's share.
	testkit.Eventually(t, "credential.expired for every credential", time.Until(latest)+6*time.Second, 100*time.Millisecond, func() (string, bool) {
		got := countBy(s.eventsNow(byType(evExpired)))
		n := 0
		for _, id := range ids {
			if got[id] > 0 {
				n++
			}
		}
		return fmt.Sprintf("%d of %d credentials with an expired event", n, len(ids)), n == len(ids)
	})
	s.expectOncePerCredential(t, evExpired, ids)

	for _, c := range creds {
		recs := s.mustEvents(t, &auditv1.EventFilter{CredentialId: c.GetId(), Types: typesOf(evExpired)})
		if len(recs) == 0 {
			continue
		}
		ev := recs[0].GetEvent()
		if late := ev.GetTime().AsTime().Sub(c.GetExpireTime().AsTime()); late > 2*time.Second || late < -time.Second {
			t.Errorf("credential %s expired at %v, event at %v: %v late; want within 2s",
				c.GetId(), c.GetExpireTime().AsTime(), ev.GetTime().AsTime(), late)
		}
		if ev.GetAgent().GetId() != c.GetAgentId() || ev.GetTask().GetId() != c.GetTaskId() || ev.GetDelegator().GetId() != c.GetDelegatorId() {
			t.Errorf("expired event for %s lacks its delegation context: %v", c.GetId(), ev)
		}
		if in := s.introspect(t, c.GetToken()); in.GetActive() {
			t.Errorf("credential %s active after expiry", c.GetId())
		}
	}
	if refs := s.referencesTo(t, ids); len(refs) != 0 {
		t.Errorf("Redis still references expired credentials: %v", refs)
	}
	// Across the whole log: no duplicate records of any kind.
	all := s.mustEvents(t, &auditv1.EventFilter{})
	if n := distinctEventIDs(all); n != len(all) {
		t.Errorf("audit log has %d records but %d distinct event ids", len(all), n)
	}
	if want := 2 * len(creds); len(all) != want {
		t.Errorf("audit log has %d records; want %d (one issued and one expired per credential)", len(all), want)
	}
}
