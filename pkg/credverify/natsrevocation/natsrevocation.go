// Package natsrevocation feeds a credverify.Verifier with revocations from the
// jitid lifecycle event stream on NATS JetStream: credential.revoked events
// and the credential ids of task.completed ones.
//
// Serve only once List.Ready is closed: before, the replay of past
// revocations has not caught up, and a credential revoked while the server
// was down would pass. While NATS is unreachable the list learns nothing
// new (the ordered consumer resumes where it stopped once NATS is back), so
// operations that must not accept a just-revoked credential use online
// introspection as well (credverify.Check.Online). It is a separate package
// so that importing credverify does not pull in NATS.
package natsrevocation

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// List implements credverify.RevocationChecker. It learns of revoked credentials from the lifecycle event
// stream, so that a resource server refuses them within a second of the
// revocation without a call per request. It replays the events of the last
// Lookback at start (no credential lives longer than the issuer's max TTL,
// so that is enough) and then follows the stream live.
type List struct {
	mu      sync.RWMutex
	revoked map[string]time.Time // jti → when it may be forgotten
	now     func() time.Time
	ttl     time.Duration
	ready   chan struct{}
	once    sync.Once
}

// Options configure Watch.
type Options struct {
	Events eventbus.Config
	// Lookback is how far back to replay at start, and how long an entry is
	// kept when its credential's expiry is unknown (1h when zero: the
	// issuer's default max TTL).
	Lookback time.Duration
	Clock    func() time.Time
	Logger   *slog.Logger
}

// Watch starts following revocations on js until ctx ends.
func Watch(ctx context.Context, js jetstream.JetStream, o Options) (*List, error) {
	if o.Lookback == 0 {
		o.Lookback = time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &List{revoked: map[string]time.Time{}, now: o.Clock, ttl: o.Lookback, ready: make(chan struct{})}
	start := o.Clock().Add(-o.Lookback)
	cons, err := js.OrderedConsumer(ctx, o.Events.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{
			o.Events.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED),
			o.Events.Subject(eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED),
		},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
	})
	if err != nil {
		return nil, fmt.Errorf("natsrevocation: follow revocations: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := eventbus.Decode(m.Data())
		if err != nil {
			o.Logger.Warn("revocation list: skipping malformed event", "subject", m.Subject(), "error", err)
		} else {
			l.add(ev)
		}
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			l.once.Do(func() { close(l.ready) })
		}
	})
	if err != nil {
		return nil, fmt.Errorf("natsrevocation: follow revocations: %w", err)
	}
	// With nothing to replay the handler never runs, so the replay is
	// complete at once. Only when nothing was delivered either: a message
	// already handed to the handler but not yet applied would otherwise be
	// missed by a caller that trusts Ready (the handler closes it then).
	if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 && info.Delivered.Consumer == 0 {
		l.once.Do(func() { close(l.ready) })
	}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				cc.Stop()
				return
			case <-t.C:
				l.prune()
			}
		}
	}()
	return l, nil
}

// Ready is closed once the replay of past revocations has caught up.
func (l *List) Ready() <-chan struct{} { return l.ready }

// Revoked reports whether jti was revoked.
func (l *List) Revoked(jti string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.revoked[jti]
	return ok
}

func (l *List) add(ev *eventsv1.LifecycleEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	forget := l.now().Add(l.ttl)
	switch ev.GetType() {
	case eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED:
		if exp := ev.GetExpireTime(); exp != nil {
			// Kept a little past expiry: a verifier's leeway may still
			// accept the token for that long.
			forget = exp.AsTime().Add(credverify.MaxLeeway)
		}
		l.revoked[ev.GetCredentialId()] = forget
	case eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED:
		for _, id := range ev.GetCredentialIds() {
			l.revoked[id] = forget
		}
	}
}

func (l *List) prune() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for id, until := range l.revoked {
		if now.After(until) {
			delete(l.revoked, id)
		}
	}
}
