package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// BenchmarkIssue measures one Issue: encoding both events and the
// credential, and the script's round trip.
func BenchmarkIssue(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	c := credential("task-bench", "agent-bench", "user-bench", time.Hour)
	issued := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c)
	expired := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c.ID = "cred-" + strconv.Itoa(i)
		if err := e.store.Issue(ctx, c, issued, expired); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSweep10000 measures sweeping 10,000 credentials that expired at
// once, spread over every shard, into expired events.
func BenchmarkSweep10000(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const n = 10000
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range n {
			c := credential("task-"+strconv.Itoa(i%500), "agent-bench", "user-bench", time.Hour)
			e.issue(b, c)
		}
		b.StartTimer()
		swept := 0
		for swept < n {
			k, err := e.store.SweepExpired(ctx, time.Now().Add(2*time.Hour), 0)
			if err != nil {
				b.Fatal(err)
			}
			swept += k
		}
		b.StopTimer()
		for _, key := range e.store.OutboxKeys() {
			e.rdb.Del(ctx, key)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/credential")
}
