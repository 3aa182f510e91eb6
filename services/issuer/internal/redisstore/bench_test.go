package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/testkit/cputime"
)

// BenchmarkIssue measures one Issue: encoding the issued event (JSON), the
// expired event (protobuf) and the credential, and the script's round trip.
// cpu-µs/op is this process's CPU (the store's side), redis-µs/op Redis's.
func BenchmarkIssue(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	c := credential("task-bench", "agent-bench", "user-bench", time.Hour)
	issued := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, c)
	expired := event(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c)
	b.ReportAllocs()
	cpu0, self0 := cputime.Redis(b, e.rdb), cputime.Process(b)
	i := 0
	for b.Loop() {
		i++
		c.ID = "cred-" + strconv.Itoa(i)
		if err := e.store.Issue(ctx, c, issued, expired); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cputime.Process(b)-self0).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64((cputime.Redis(b, e.rdb)-cpu0).Microseconds())/float64(b.N), "redis-µs/op")
}

// BenchmarkSweep10000 measures sweeping 10,000 credentials that expired at
// once, spread over every shard, into expired events, and how long another
// client's PING, sent every millisecond meanwhile, waited (Redis runs one
// script at a time).
func BenchmarkSweep10000(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const n = 10000
	pinger := redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr})
	defer pinger.Close()
	var sweeping atomic.Bool
	var pings []time.Duration
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if !sweeping.Load() {
				continue
			}
			start := time.Now()
			if err := pinger.Ping(ctx).Err(); err != nil {
				b.Error(err)
				return
			}
			pings = append(pings, time.Since(start))
		}
	}()
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		for i := range n {
			c := credential("task-"+strconv.Itoa(i%500), "agent-bench", "user-bench", time.Hour)
			e.issue(b, c)
		}
		cpu0 := cputime.Redis(b, e.rdb)
		sweeping.Store(true)
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
		sweeping.Store(false)
		cpu += cputime.Redis(b, e.rdb) - cpu0
		for _, key := range e.store.OutboxKeys() {
			e.rdb.Del(ctx, key)
		}
		b.StartTimer()
	}
	close(stop)
	<-pinged
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/credential")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "redis-µs/credential")
	if len(pings) > 0 {
		slices.Sort(pings)
		b.ReportMetric(float64(pings[len(pings)*99/100].Microseconds())/1000, "ping-p99-ms")
		b.ReportMetric(float64(pings[len(pings)-1].Microseconds())/1000, "ping-max-ms")
	}
}

// BenchmarkRevokeByDelegator10000 measures revoking the 10,000 live
// credentials of one delegator, spread over every shard, with one revoked
// event each: the reads, the events' encoding and the scripts; and the
// latency of Get (an introspection's read) of another credential meanwhile.
func BenchmarkRevokeByDelegator10000(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const n = 10000
	var own, redisUsed time.Duration
	var gets []time.Duration
	bystander := credential("task-bystander", "agent-bystander", "user-bystander", time.Hour)
	e.issue(b, bystander)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range n {
			c := credential("task-"+strconv.Itoa(i%500), "agent-"+strconv.Itoa(i%50), "user-bench", time.Hour)
			e.issue(b, c)
		}
		for _, key := range e.store.OutboxKeys() {
			e.rdb.Del(ctx, key)
		}
		own0, redis0 := cputime.Process(b), cputime.Redis(b, e.rdb)
		stop := make(chan struct{})
		getter := make(chan []time.Duration)
		go func() {
			var lat []time.Duration
			for {
				select {
				case <-stop:
					getter <- lat
					return
				default:
				}
				t := time.Now()
				if _, err := e.store.Get(ctx, bystander.ID, bystander.Task.GetId()); err != nil {
					b.Error(err)
				}
				lat = append(lat, time.Since(t))
				time.Sleep(time.Millisecond)
			}
		}()
		b.StartTimer()
		ids, err := e.store.Revoke(ctx, issuer.Selector{Kind: issuer.ByDelegator, ID: "user-bench"}, revokedEvent)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		close(stop)
		gets = append(gets, <-getter...)
		own += cputime.Process(b) - own0
		redisUsed += cputime.Redis(b, e.rdb) - redis0
		b.StartTimer()
		if len(ids) != n {
			b.Fatalf("revoked %d, want %d", len(ids), n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/credential")
	b.ReportMetric(float64(own.Microseconds())/float64(b.N*n), "client-cpu-µs/credential")
	b.ReportMetric(float64(redisUsed.Microseconds())/float64(b.N*n), "redis-cpu-µs/credential")
	if len(gets) > 0 {
		slices.Sort(gets)
		b.ReportMetric(float64(gets[len(gets)*99/100].Microseconds())/1000, "get-p99-ms")
	}
}
