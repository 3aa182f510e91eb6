package workload

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/bench/internal/suite"
	"github.com/jitid/jitid/pkg/eventbus"
	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// Lag is one sample of the audit consumer's lag.
type Lag struct {
	At time.Duration
	// Pending is jitid_audit_consumer_pending from audit's /metrics.
	Pending float64
	// Stored is jitid_audit_events_stored_total.
	Stored float64
	// Behind is the durable consumer's own view: not delivered plus
	// delivered and not yet acked (acked after commit).
	Behind uint64
}

// Auditor watches the audit service: its metrics and its JetStream
// consumer.
type Auditor struct {
	s    *suite.Suite
	nc   *nats.Conn
	js   jetstream.JetStream
	cons jetstream.Consumer
}

// NewAuditor connects to NATS.
func NewAuditor(_ context.Context, s *suite.Suite) (*Auditor, error) {
	nc, err := nats.Connect(s.NATSURL, nats.Name("jitid-load"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	a := &Auditor{s: s, nc: nc, js: js}
	return a, nil
}

// Close closes the NATS connection.
func (a *Auditor) Close() { a.nc.Close() }

// NATS returns the connection, for subscribers.
func (a *Auditor) NATS() *nats.Conn { return a.nc }

// Behind returns the durable consumer's not-yet-acked count.
func (a *Auditor) Behind(ctx context.Context) (uint64, error) {
	if a.cons == nil {
		c, err := a.js.Consumer(ctx, eventbus.DefaultStream, "audit")
		if err != nil {
			return 0, err
		}
		a.cons = c
	}
	info, err := a.cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Sample reads the lag now.
func (a *Auditor) Sample(ctx context.Context, start time.Time) (Lag, error) {
	l := Lag{At: time.Since(start)}
	var err error
	if l.Pending, err = suite.Metric(ctx, a.s.AuditAdmin, "jitid_audit_consumer_pending"); err != nil {
		return l, err
	}
	if l.Stored, err = suite.Metric(ctx, a.s.AuditAdmin, "jitid_audit_events_stored_total"); err != nil {
		return l, err
	}
	l.Behind, err = a.Behind(ctx)
	return l, err
}

// Watch samples the lag every interval until the returned stop is called,
// which returns the samples.
func (a *Auditor) Watch(ctx context.Context, interval time.Duration) (stop func() []Lag) {
	var (
		mu      sync.Mutex
		samples []Lag
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if l, err := a.Sample(ctx, start); err == nil {
				mu.Lock()
				samples = append(samples, l)
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() []Lag {
		cancel()
		wg.Wait()
		return samples
	}
}

// WaitDrained waits until the consumer has acked everything, and returns how
// long that took.
func (a *Auditor) WaitDrained(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		b, err := a.Behind(ctx)
		if err == nil && b == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("audit still %d events behind after %v (last error %v)", b, timeout, err) //nolint:errorlint // err may be nil here: reported as text
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Growth is how fast the lag grew over samples, in events/s: the slope of a
// least-squares line through Behind. Flat lag is a growth near zero.
func Growth(samples []Lag) float64 {
	n := float64(len(samples))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.At.Seconds(), float64(s.Behind)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// MaxBehind is the largest lag seen.
func MaxBehind(samples []Lag) uint64 {
	var m uint64
	for _, s := range samples {
		m = max(m, s.Behind)
	}
	return m
}

// CatchUp is audit's backlog drain: with audit stopped, n issued events are
// published to the stream (as the relay does: CloudEvents envelope,
// Nats-Msg-Id = event id); then audit starts and the time until its
// consumer has acked them all is measured, from the process start.
func (a *Auditor) CatchUp(ctx context.Context, n int) (time.Duration, error) {
	if _, err := a.WaitDrained(ctx, time.Minute); err != nil {
		return 0, err
	}
	a.s.Audit.Stop()
	reqs := NewRequests("catchup")
	now := time.Now()
	for i := 0; i < n; {
		batch := min(4096, n-i)
		futures := make([]jetstream.PubAckFuture, 0, batch)
		for range batch {
			ev := issuedEvent(reqs, i, now)
			data, err := eventbus.Encode(eventbus.DefaultSource, ev)
			if err != nil {
				return 0, err
			}
			msg := &nats.Msg{Subject: eventbus.Config{}.Subject(ev.GetType()), Data: data, Header: nats.Header{}}
			f, err := a.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.GetId()))
			if err != nil {
				return 0, err
			}
			futures = append(futures, f)
			i++
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return 0, fmt.Errorf("publish backlog: %w", err)
			case <-time.After(30 * time.Second):
				return 0, fmt.Errorf("publish backlog: no ack within 30s")
			}
		}
	}
	if b, err := a.Behind(ctx); err != nil || b < uint64(n) {
		return 0, fmt.Errorf("backlog is %d events (%v), want %d", b, err, n) //nolint:errorlint // err may be nil here: reported as text
	}
	start := time.Now()
	if err := a.s.Audit.Start(ctx); err != nil {
		return 0, err
	}
	if _, err := a.WaitDrained(ctx, 5*time.Minute); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func issuedEvent(reqs *Requests, i int, now time.Time) *eventsv1.LifecycleEvent {
	req := reqs.Issue(0, uint64(i))
	return &eventsv1.LifecycleEvent{
		Id:           fmt.Sprintf("%s-ev-%d", reqs.prefix, i),
		Type:         eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
		Time:         timestamppb.New(now),
		CredentialId: fmt.Sprintf("%s-cred-%d", reqs.prefix, i),
		Agent:        req.GetAgent(),
		Delegator:    req.GetDelegator(),
		Task:         req.GetTask(),
		Scopes:       req.GetScopes(),
		Audience:     "jitid",
		IssueTime:    timestamppb.New(now),
		ExpireTime:   timestamppb.New(now.Add(10 * time.Minute)),
		Issuer:       "https://jitid.local",
	}
}

// CountEvents counts the audit records of a delegator's events of one type,
// through AuditService.QueryEvents.
func (a *Auditor) CountEvents(ctx context.Context, delegator string, t eventsv1.EventType) (int, error) {
	creds, err := a.s.Creds("auditor")
	if err != nil {
		return 0, err
	}
	conn, err := Dial(a.s.AuditAddr, 1, creds)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	client := auditv1.NewAuditServiceClient(conn.Conn(0))
	n, token := 0, ""
	for {
		resp, err := client.QueryEvents(ctx, &auditv1.QueryEventsRequest{
			Filter:   &auditv1.EventFilter{DelegatorId: delegator, Types: []eventsv1.EventType{t}},
			PageSize: 1000, PageToken: token,
		})
		if err != nil {
			return n, fmt.Errorf("query audit: %w", err)
		}
		n += len(resp.GetRecords())
		if token = resp.GetNextPageToken(); token == "" {
			return n, nil
		}
	}
}
