package grpcserver

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jitid/jitid/pkg/statusreason"
)

// Default per-caller rate: generous enough that no well-behaved platform
// meets it (a platform issuing for thousands of agents makes tens of calls
// a second), low enough that one flooding caller leaves the server to the
// others.
const (
	DefaultCallerRate  = 500
	DefaultCallerBurst = 1000
	// DefaultMaxTrackedCallers bounds the limiter table. Callers are
	// authenticated, so the table holds only identities a trust domain or
	// a key set vouches for; idle ones are dropped long before this.
	DefaultMaxTrackedCallers = 65536
)

// NoRateLimit as Limits.CallerRate turns the per-caller limit off.
var NoRateLimit = math.Inf(1)

// callerLimiter is a token bucket per authenticated caller. A caller idle
// long enough for its bucket to refill is dropped: a new bucket for it is
// the same as the old one, so eviction changes no answer and memory holds
// only the callers active in the last refill period.
type callerLimiter struct {
	rate    rate.Limit
	burst   int
	refill  time.Duration // time for an empty bucket to fill
	max     int
	now     func() time.Time
	counter *prometheus.CounterVec

	mu        sync.Mutex
	callers   map[string]*callerBucket
	lastSweep time.Time
}

type callerBucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newCallerLimiter(perSecond float64, burst, maxCallers int, now func() time.Time) *callerLimiter {
	if now == nil {
		now = time.Now
	}
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &callerLimiter{
		rate: rate.Limit(perSecond), burst: burst, refill: max(refill, time.Second), max: maxCallers, now: now,
		callers: map[string]*callerBucket{}, lastSweep: now(),
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitid_rate_limited_calls_total",
			Help: "Calls refused RESOURCE_EXHAUSTED because their caller exceeded its rate (-rate-limit, -rate-burst).",
		}, []string{"grpc_service", "grpc_method"}),
	}
}

// wait returns how long the caller must wait before its call is allowed;
// zero allows it now (and takes the token).
func (l *callerLimiter) wait(caller string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.refill || len(l.callers) >= l.max {
		l.sweep(now)
	}
	b, ok := l.callers[caller]
	if !ok {
		b = &callerBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.callers[caller] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return l.refill
	}
	if d := r.DelayFrom(now); d > 0 {
		// Refused calls take no token, so a throttled caller that waits
		// the delay it was told gets through.
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep drops the buckets idle for a refill period; if the table is still
// full (more active callers than it holds) it drops arbitrary ones, which
// costs them only a fresh burst.
func (l *callerLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for c, b := range l.callers {
		if now.Sub(b.last) >= l.refill {
			delete(l.callers, c)
		}
	}
	for c := range l.callers {
		if len(l.callers) < l.max {
			break
		}
		delete(l.callers, c)
	}
}

func (l *callerLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.callers)
}

// check refuses the call when its caller is over its rate. Calls without a
// caller (a server with no Authenticator) are not limited here.
func (l *callerLimiter) check(ctx context.Context, fullMethod string) error {
	caller, ok := Caller(ctx)
	if !ok {
		return nil
	}
	d := l.wait(caller)
	if d == 0 {
		return nil
	}
	meta := interceptors.NewServerCallMeta(fullMethod, nil, nil)
	l.counter.WithLabelValues(meta.Service, meta.Method).Inc()
	d = max(d.Round(time.Millisecond), time.Millisecond)
	return statusreason.Error(codes.ResourceExhausted,
		fmt.Sprintf("caller %s is over its rate of %g calls/s (burst %d); retry after %s", caller, float64(l.rate), l.burst, d),
		statusreason.RateLimited, map[string]string{"retry_after": d.String()},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
}

func (l *callerLimiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := l.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (l *callerLimiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := l.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}
