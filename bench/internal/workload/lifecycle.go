package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
)

// MassExpiryResult is what MassExpiry measured.
type MassExpiryResult struct {
	N        int
	MintRate float64
	// Reported is how many expired events of the n reached the stream.
	Reported int
	// Last is the latest report after the credentials' expiry.
	Last time.Duration
	// Issue is the open-loop issuance measured meanwhile.
	Issue load.Result
	// CPU is each process's CPU time from the open-loop start to the last
	// report, when a CPU reader was given.
	CPU map[string]time.Duration
}

// CPUReader returns the CPU time used so far by each process of the suite.
type CPUReader func() map[string]time.Duration

func cpuSince(read CPUReader, before map[string]time.Duration) map[string]time.Duration {
	if read == nil {
		return nil
	}
	out := map[string]time.Duration{}
	for k, v := range read() {
		out[k] = v - before[k]
	}
	return out
}

func cpuNow(read CPUReader) map[string]time.Duration {
	if read == nil {
		return nil
	}
	return read()
}

// MassExpiry issues n credentials that all expire in the same second, then
// issues at rate per second from just before that second until every
// expired event was seen on the stream (or 20 s), and measures how late the
// last expired event came. Credentials are minted as fast as the suite
// goes; expireIn must leave time for that.
func MassExpiry(ctx context.Context, p *Pool, a *Auditor, n int, expireIn time.Duration, rate float64, cpu CPUReader) (MassExpiryResult, error) {
	res := MassExpiryResult{N: n}
	expiry := time.Now().Add(expireIn).Truncate(time.Second)
	reqs := NewRequests("expiry")
	clients := p.Issuers()
	ids := make(map[string]struct{}, n)
	var idsMu sync.Mutex
	start := time.Now()
	const workers = 48
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				req := reqs.Issue(w, uint64(i))
				if time.Until(expiry) < 2*time.Second {
					errc <- fmt.Errorf("minting %d credentials took too long: lengthen the expiry", n)
					return
				}
				// Tasks that share a deadline: every credential's life
				// ends on it, whatever the issuer's clock says now.
				req.Task.DeadlineTime = timestamppb.New(expiry)
				req.Ttl = durationpb.New(15 * time.Minute)
				resp, err := clients[w%len(clients)].IssueCredential(ctx, req)
				if err != nil {
					errc <- err
					return
				}
				if got := resp.GetCredential().GetExpireTime().AsTime(); !got.Equal(expiry) {
					errc <- fmt.Errorf("credential expires at %v, want %v", got, expiry)
					return
				}
				idsMu.Lock()
				ids[resp.GetCredential().GetId()] = struct{}{}
				idsMu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return res, err
	}
	res.MintRate = float64(n) / time.Since(start).Seconds()

	var reported atomic.Int64
	var last atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	subject := eventbus.Config{}.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	sub, err := a.NATS().Subscribe(subject, func(m *nats.Msg) {
		var env struct {
			Subject string `json:"subject"`
		}
		if json.Unmarshal(m.Data, &env) != nil {
			return
		}
		idsMu.Lock()
		_, ours := ids[env.Subject]
		delete(ids, env.Subject) // a redelivery is counted once
		idsMu.Unlock()
		if !ours {
			return
		}
		last.Store(int64(time.Since(expiry)))
		if reported.Add(1) == int64(n) {
			once.Do(func() { close(done) })
		}
	})
	if err != nil {
		return res, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)

	// Issue at rate from 2 s before the expiry until the last report.
	if wait := time.Until(expiry.Add(-2 * time.Second)); wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	cpu0 := cpuNow(cpu)
	openCtx, stopOpen := context.WithCancel(ctx)
	resc := make(chan load.Result, 1)
	go func() { resc <- load.Open(openCtx, rate, 25*time.Second, 256, Issue(p, NewRequests("during-expiry"))) }()
	select {
	case <-done:
		time.Sleep(time.Second) // a little issuance after the burst, too
	case <-time.After(time.Until(expiry.Add(20 * time.Second))):
	case <-ctx.Done():
	}
	stopOpen()
	res.Issue = <-resc
	res.CPU = cpuSince(cpu, cpu0)
	res.Reported = int(reported.Load())
	res.Last = time.Duration(last.Load())
	return res, nil
}

// RevokeResult is what RevokeByDelegator measured.
type RevokeResult struct {
	N        int
	MintRate float64
	// Revoked is how many credentials the call revoked.
	Revoked int
	// Call is how long RevokeCredentials took.
	Call time.Duration
	// Sampled tokens were introspected over and over from the call's start
	// until each answered inactive; AllInactive reports they all did, the
	// first FirstInactive and the last Inactive after the call started, in
	// Polls introspections, the slowest taking SlowestPoll.
	Sampled       int
	AllInactive   bool
	FirstInactive time.Duration
	Inactive      time.Duration
	Polls         int
	SlowestPoll   time.Duration
	// StillActive counts sampled tokens active again once the call returned.
	StillActive int
	// Audited is how many revoked events of the delegator audit recorded,
	// and AuditedAfter when the last of them was recorded (from the call).
	Audited      int
	AuditedAfter time.Duration
	// CPU is each process's CPU time during the RevokeCredentials call.
	CPU map[string]time.Duration
}

// revokeSample is how many of the tokens RevokeByDelegator watches.
const revokeSample = 200

// RevokeByDelegator issues n live credentials for one delegator, waits
// until audit has recorded their issuance, revokes them all with one call
// while introspecting a sample of them until each is inactive, and waits
// until audit recorded every revoked event. The time to inactive is what a
// resource server that introspects sees, however long the call itself
// takes to finish recording.
func RevokeByDelegator(ctx context.Context, p *Pool, a *Auditor, n int, cpu CPUReader) (RevokeResult, error) {
	res := RevokeResult{N: n}
	reqs := NewRequests("revoke")
	reqs.Delegator = "user:revoke-" + reqs.prefix + "@example.com"
	reqs.TTL = 15 * time.Minute
	start := time.Now()
	creds, err := Mint(ctx, p, reqs, n)
	if err != nil {
		return res, err
	}
	res.MintRate = float64(n) / time.Since(start).Seconds()
	if _, err := a.WaitDrained(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	stored0, err := a.Sample(ctx, time.Now())
	if err != nil {
		return res, err
	}
	var sample []string
	for i := 0; i < n && len(sample) < revokeSample; i += max(n/revokeSample, 1) {
		sample = append(sample, creds[i].GetToken())
	}
	res.Sampled = len(sample)
	clients := p.Issuers()
	client := clients[0]

	pollCtx, stopPolling := context.WithTimeout(ctx, 2*time.Minute)
	defer stopPolling()
	polled := make(chan inactiveResult, 1)
	cpu0 := cpuNow(cpu)
	t0 := time.Now()
	go func() { polled <- untilInactive(pollCtx, clients, sample, t0) }()
	resp, err := client.RevokeCredentials(ctx, &issuerv1.RevokeCredentialsRequest{
		Selector: &issuerv1.RevokeCredentialsRequest_DelegatorId{DelegatorId: reqs.Delegator}, Reason: "delegator left the company",
	})
	res.Call = time.Since(t0)
	res.CPU = cpuSince(cpu, cpu0)
	if err != nil {
		stopPolling()
		<-polled
		return res, fmt.Errorf("revoke by delegator: %w", err)
	}
	res.Revoked = int(resp.GetRevoked())
	pr := <-polled
	res.AllInactive, res.FirstInactive, res.Inactive, res.Polls, res.SlowestPoll = pr.err == nil, pr.first, pr.last, pr.polls, pr.slowest
	if pr.err != nil && pollCtx.Err() == nil {
		return res, fmt.Errorf("introspect during the revocation: %w", pr.err)
	}
	for _, tok := range sample {
		r, err := client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: tok})
		if err != nil {
			return res, err
		}
		if r.GetActive() {
			res.StillActive++
		}
	}
	// Every revoked event is in the audit log when audit has stored as
	// many new records as were revoked; then the log is asked, by
	// delegator and type, to count them one by one.
	deadline := t0.Add(2 * time.Minute)
	for {
		l, err := a.Sample(ctx, time.Now())
		if err == nil && int(l.Stored-stored0.Stored) >= res.Revoked {
			res.AuditedAfter = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("audit stored %v of %d revoked events within 2 minutes (%v)", l.Stored-stored0.Stored, res.Revoked, err) //nolint:errorlint // err may be nil here: reported as text
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Audited, err = a.CountEvents(ctx, reqs.Delegator, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED)
	if err != nil {
		return res, err
	}
	return res, nil
}

// inactiveResult is what untilInactive saw: when the first and the last
// token answered inactive (from t0), after how many introspections, the
// slowest of them, or why it stopped.
type inactiveResult struct {
	first, last time.Duration
	polls       int
	slowest     time.Duration
	err         error
}

// raise stores v in a when it is larger.
func raise(a *atomic.Int64, v int64) {
	for {
		prev := a.Load()
		if v <= prev || a.CompareAndSwap(prev, v) {
			return
		}
	}
}

// untilInactive introspects tokens round after round, twenty callers at
// once (ten tokens each, so that a round is short), each token until it
// answers inactive, and returns when the last one did. A short pause between rounds keeps the polling from competing
// with the revocation for the issuer's CPU more than resource servers
// would.
func untilInactive(ctx context.Context, clients []issuerv1.IssuerServiceClient, tokens []string, t0 time.Time) inactiveResult {
	const pollers = 20
	var (
		first, last, polls, slowest atomic.Int64
		wg                          sync.WaitGroup
	)
	first.Store(math.MaxInt64)
	errc := make(chan error, pollers)
	for w := range pollers {
		var active []string
		for i := w; i < len(tokens); i += pollers {
			active = append(active, tokens[i])
		}
		client := clients[w%len(clients)]
		wg.Go(func() {
			for len(active) > 0 {
				still := active[:0]
				for _, tok := range active {
					sent := time.Now()
					r, err := client.IntrospectCredential(ctx, &issuerv1.IntrospectCredentialRequest{Token: tok})
					polls.Add(1)
					raise(&slowest, int64(time.Since(sent)))
					if err != nil {
						errc <- err
						return
					}
					if r.GetActive() {
						still = append(still, tok)
						continue
					}
					at := int64(time.Since(t0))
					raise(&last, at)
					for {
						prev := first.Load()
						if at >= prev || first.CompareAndSwap(prev, at) {
							break
						}
					}
				}
				active = still
				if len(active) > 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	res := inactiveResult{last: time.Duration(last.Load()), polls: int(polls.Load()), slowest: time.Duration(slowest.Load()), err: <-errc}
	if f := first.Load(); f != math.MaxInt64 {
		res.first = time.Duration(f)
	}
	return res
}
