package redisstore_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
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
		own0, redis0 := cpuTime(b), e.redisCPU(b)
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
		own += cpuTime(b) - own0
		redisUsed += e.redisCPU(b) - redis0
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

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the CPU time (user and system) Redis used so far.
func (e *env) redisCPU(b *testing.B) time.Duration {
	info, err := e.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += time.Duration(f * float64(time.Second))
		}
	}
	return total
}
