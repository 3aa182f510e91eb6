// Package replay re-evaluates the decisions recorded in the audit log
// against a candidate policy set and reports which credentials would now be
// denied, narrowed or widened: "would today's policy still issue this?".
//
// It reads issued, exchanged and denied events through
// jitid.audit.v1.AuditService/QueryEvents, page by page. Each event is
// turned back into the request that produced it: agent, delegator, task,
// audience and time from the event; scopes and TTL from requested_scopes
// and requested_ttl. Events recorded before the issuer filled those two
// fall back to the event's scopes (granted ones for issued events, so a
// narrowing by the old policy cannot be seen) and to decision.max_ttl
// (else expire_time - issue_time); Entry.Fallback marks them. The agent
// chain is known by ids only, so chain narrowing is not replayed. The
// platform is the event's caller (else its owner), and a delegator the
// event says was asserted_by a platform is replayed as asserted by it.
//
// Replay decides in process, at each event's own time: it needs no
// policy server, so the admin-only rule on decision_time does not stand
// in its way.
package replay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/jitid/jitid/proto/jitid/audit/v1"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
	policyv1 "github.com/jitid/jitid/proto/jitid/policy/v1"
	"github.com/jitid/jitid/services/policy/internal/grpcapi"
	"github.com/jitid/jitid/services/policy/internal/policy"
)

// eventQuerier is what replay needs from the audit service;
// auditv1.AuditServiceClient satisfies it.
type eventQuerier interface {
	QueryEvents(ctx context.Context, in *auditv1.QueryEventsRequest, opts ...grpc.CallOption) (*auditv1.QueryEventsResponse, error)
}

// Options select the events to replay.
type Options struct {
	// Start (inclusive) and End (exclusive) bound the event time; zero End
	// means now.
	Start, End time.Time
	// PageSize of each QueryEvents call; 500 when zero.
	PageSize int32
}

// Outcome classifies a replayed decision.
type Outcome string

// The outcomes.
const (
	Same     Outcome = "same"
	Denied   Outcome = "denied"   // was issued, would now be denied
	Narrowed Outcome = "narrowed" // fewer scopes, a shorter TTL or more obligations
	Widened  Outcome = "widened"  // was denied, or now more scopes or a longer TTL
	Invalid  Outcome = "invalid"  // the event no longer makes a valid request
)

// Entry is one replayed event.
type Entry struct {
	EventID      string
	Type         eventsv1.EventType
	Time         time.Time
	CredentialID string
	AgentID      string
	TaskID       string
	Outcome      Outcome
	// Was is the recorded decision, Now the candidate's.
	WasAllow, NowAllow   bool
	WasScopes, NowScopes []string
	WasTTL, NowTTL       time.Duration
	WasObligations       []string
	NowObligations       []string
	NowReasons           []string
	// Fallback is true when the event lacks requested_scopes or
	// requested_ttl and the replay used the recorded grant instead.
	Fallback bool
	Error    string
}

// Report is the result of a replay.
type Report struct {
	CandidateVersion string
	Counts           map[Outcome]int
	// Entries holds every event whose outcome is not Same, in event order.
	Entries []Entry
}

// Run replays the events selected by opts from src against set.
func Run(ctx context.Context, src eventQuerier, set *policy.Set, opts Options) (*Report, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	if opts.End.IsZero() {
		opts.End = time.Now()
	}
	engine := policy.NewEngine(set, policy.EngineOptions{
		NewDecisionID: func() (string, error) { return "replay", nil },
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	rep := &Report{CandidateVersion: set.Version(), Counts: map[Outcome]int{}}
	req := &auditv1.QueryEventsRequest{
		Filter: &auditv1.EventFilter{
			Types: []eventsv1.EventType{eventsv1.EventType_EVENT_TYPE_CREDENTIAL_ISSUED,
				eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXCHANGED, eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED},
			StartTime: timestamppb.New(opts.Start),
			EndTime:   timestamppb.New(opts.End),
		},
		PageSize: opts.PageSize,
	}
	for {
		resp, err := src.QueryEvents(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("query audit events: %w", err)
		}
		for _, rec := range resp.GetRecords() {
			e := replayOne(ctx, engine, rec.GetEvent())
			rep.Counts[e.Outcome]++
			if e.Outcome != Same {
				rep.Entries = append(rep.Entries, e)
			}
		}
		if resp.GetNextPageToken() == "" {
			return rep, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func replayOne(ctx context.Context, engine *policy.Engine, ev *eventsv1.LifecycleEvent) Entry {
	e := Entry{EventID: ev.GetId(), Type: ev.GetType(), Time: ev.GetTime().AsTime(), CredentialID: ev.GetCredentialId(),
		AgentID: ev.GetAgent().GetId(), TaskID: ev.GetTask().GetId()}
	denied := ev.GetType() == eventsv1.EventType_EVENT_TYPE_CREDENTIAL_DENIED
	e.WasAllow = !denied
	if !denied {
		e.WasScopes = ev.GetScopes()
		e.WasTTL = recordedTTL(ev)
		e.WasObligations = ev.GetDecision().GetObligations()
	}
	ereq := &policyv1.EvaluateRequest{
		Agent: ev.GetAgent(), Delegator: ev.GetDelegator(), Task: ev.GetTask(),
		Scopes: ev.GetRequestedScopes(), Ttl: ev.GetRequestedTtl(), DecisionTime: ev.GetTime(), Audience: ev.GetAudience(),
		// The platform the issuer acted for: the step's caller, else the
		// owner (events recorded before callers were, have neither).
		Platform: ev.GetCaller(),
	}
	if ereq.Platform == "" {
		ereq.Platform = ev.GetOwner()
	}
	if by := ev.GetAssertedBy(); by != "" {
		ereq.DelegatorAsserted = true
		ereq.Platform = by
	}
	for _, id := range ev.GetAgentChain() {
		ereq.AgentChain = append(ereq.AgentChain, &identityv1.Agent{Id: id})
	}
	req := grpcapi.ToRequest(ereq)
	if len(req.Scopes) == 0 {
		e.Fallback = true
		req.Scopes = ev.GetScopes()
	}
	if req.TTL <= 0 {
		e.Fallback = true
		req.TTL = recordedTTL(ev)
	}
	d, err := engine.Evaluate(ctx, req)
	if err != nil {
		e.Outcome, e.Error = Invalid, err.Error()
		return e
	}
	e.NowAllow, e.NowScopes, e.NowTTL, e.NowObligations, e.NowReasons = d.Allow, d.GrantedScopes, d.MaxTTL, d.Obligations, d.Reasons
	e.Outcome = classify(&e)
	return e
}

// recordedTTL is the life the recorded decision allowed.
func recordedTTL(ev *eventsv1.LifecycleEvent) time.Duration {
	if d := ev.GetDecision().GetMaxTtl(); d != nil {
		return d.AsDuration()
	}
	if ev.GetExpireTime() != nil && ev.GetIssueTime() != nil {
		return ev.GetExpireTime().AsTime().Sub(ev.GetIssueTime().AsTime())
	}
	return 0
}

func classify(e *Entry) Outcome {
	switch {
	case e.WasAllow && !e.NowAllow:
		return Denied
	case !e.WasAllow && e.NowAllow:
		return Widened
	case !e.WasAllow:
		return Same
	}
	lost := slices.ContainsFunc(e.WasScopes, func(s string) bool { return !slices.Contains(e.NowScopes, s) })
	gained := slices.ContainsFunc(e.NowScopes, func(s string) bool { return !slices.Contains(e.WasScopes, s) })
	newObligation := slices.ContainsFunc(e.NowObligations, func(s string) bool { return !slices.Contains(e.WasObligations, s) })
	switch {
	case lost || (e.WasTTL > 0 && e.NowTTL < e.WasTTL) || newObligation:
		return Narrowed
	case gained || (e.WasTTL > 0 && e.NowTTL > e.WasTTL):
		return Widened
	}
	return Same
}

// Write prints rep for a person: a summary line, then one block per
// changed decision.
func Write(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "candidate policy set %s\n", rep.CandidateVersion)
	total := 0
	for _, n := range rep.Counts {
		total += n
	}
	fmt.Fprintf(w, "%d decisions replayed: %d same, %d would now be denied, %d narrowed, %d widened, %d invalid\n",
		total, rep.Counts[Same], rep.Counts[Denied], rep.Counts[Narrowed], rep.Counts[Widened], rep.Counts[Invalid])
	for _, e := range rep.Entries {
		what := strings.TrimPrefix(e.Type.String(), "EVENT_TYPE_")
		id := e.CredentialID
		if id == "" {
			id = "event " + e.EventID
		}
		fmt.Fprintf(w, "\n%-8s %s %s %s (agent %s, task %s)\n", strings.ToUpper(string(e.Outcome)), e.Time.UTC().Format(time.RFC3339), what, id, e.AgentID, e.TaskID)
		if e.Error != "" {
			fmt.Fprintf(w, "         %s\n", e.Error)
			continue
		}
		fmt.Fprintf(w, "         was: allow=%v scopes=%v ttl=%v obligations=%v\n", e.WasAllow, e.WasScopes, e.WasTTL, e.WasObligations)
		fmt.Fprintf(w, "         now: allow=%v scopes=%v ttl=%v obligations=%v\n", e.NowAllow, e.NowScopes, e.NowTTL, e.NowObligations)
		if len(e.NowReasons) > 0 {
			fmt.Fprintf(w, "         reasons: %q\n", e.NowReasons)
		}
		if e.Fallback {
			fmt.Fprintf(w, "         (event has no requested scopes/TTL: replayed the recorded grant)\n")
		}
	}
}
