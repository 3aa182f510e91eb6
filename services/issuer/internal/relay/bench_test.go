package relay_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/internal/relay"
	"github.com/jitid/jitid/testkit/cputime"
	"github.com/jitid/jitid/testkit/testserver"
)

// BenchmarkRelayBacklog measures the relay draining a backlog of 10,000
// events into JetStream (embedded, in this process): the expired events
// of a mass expiry, swept into the outbox, or the issued events of as many
// issuances. cpu-µs/event is this process's CPU: the relay's, and the NATS
// server's unless JITID_TEST_NATS_URL names one outside.
func BenchmarkRelayBacklog(b *testing.B) {
	for _, kind := range []string{"expired", "issued"} {
		b.Run(kind, func(b *testing.B) {
			const n = 10000
			e := newBenchEnv(b)
			ctx := context.Background()
			b.ReportAllocs()
			var cpu, self time.Duration
			for b.Loop() {
				b.StopTimer()
				e.fill(b, n, kind == "expired")
				r := relay.New(e.rdb, e.js, relay.Options{
					Streams: e.store.OutboxKeys(), Events: e.events, PublishTimeout: 10 * time.Second,
					PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
				})
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				cpu0, self0 := cputime.Redis(b, e.rdb), cputime.Process(b)
				b.StartTimer()
				go func() { done <- r.Run(rctx) }()
				for {
					left, err := r.Backlog(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if left == 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				b.StopTimer()
				cpu += cputime.Redis(b, e.rdb) - cpu0
				self += cputime.Process(b) - self0
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/event")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "redis-µs/event")
			b.ReportMetric(float64(self.Microseconds())/float64(b.N*n), "cpu-µs/event")
		})
	}
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	return newEnv(b, testserver.NATSURL(b))
}

// fill writes n events into the outbox: issued events, or (expired) the
// expired events of n credentials swept at once, their issued events
// removed first.
func (e *env) fill(b *testing.B, n int, expired bool) {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				c := &issuer.Credential{
					ID:        randID("cred-"),
					Issuer:    "https://jitid.test",
					Audience:  "jitid",
					Agent:     &identityv1.Agent{Id: "agent-bench", Class: identityv1.AgentClass_AGENT_CLASS_EPHEMERAL, Attributes: map[string]string{"model": "m1"}},
					Delegator: &identityv1.Delegator{Id: "user:bench@example.com"},
					Task:      &identityv1.Task{Id: randID("task-"), Purpose: "triage the support queue", Sensitivity: identityv1.Sensitivity_SENSITIVITY_LOW},
					Scopes:    []string{"tickets:read", "tickets:comment"},
					IssuedAt:  now,
					ExpiresAt: now.Add(time.Hour),
				}
				ev := func(typ eventsv1.EventType, at time.Time) *eventsv1.LifecycleEvent {
					return &eventsv1.LifecycleEvent{
						Id: randID("ev-"), Type: typ, Time: timestamppb.New(at), CredentialId: c.ID,
						Agent: c.Agent, Delegator: c.Delegator, Task: c.Task, Scopes: c.Scopes, Audience: c.Audience,
						IssueTime: timestamppb.New(c.IssuedAt), ExpireTime: timestamppb.New(c.ExpiresAt), Issuer: c.Issuer,
					}
				}
				if err := e.store.Issue(ctx, c, ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED, now),
					ev(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED, c.ExpiresAt)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if !expired {
		return
	}
	for _, s := range e.store.OutboxKeys() {
		if err := e.rdb.XTrimMaxLen(ctx, s, 0).Err(); err != nil {
			b.Fatal(err)
		}
	}
	for swept := 0; swept < n; {
		k, err := e.store.SweepExpired(ctx, now.Add(2*time.Hour), 0)
		if err != nil {
			b.Fatal(err)
		}
		swept += k
	}
}
