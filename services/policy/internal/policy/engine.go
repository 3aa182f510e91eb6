package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// EngineOptions configure an Engine. Zero values pick production defaults.
type EngineOptions struct {
	// Clock gives the time of execution when a request has none, and the
	// time a set was installed; time.Now when nil.
	Clock func() time.Time
	// NewDecisionID names each decision; a UUIDv7 (time ordered, so that
	// audit records sort by it) when nil.
	NewDecisionID func() (string, error)
	Logger        *slog.Logger
	// OnReload, when set, is called after every change of the engine's
	// state (a set installed, a reload failed or recovered), e.g. to update
	// health. It must not call back into the engine's setters.
	OnReload func(Status)
}

// Engine evaluates requests against the policy set in use and lets a new
// set replace it atomically, so that reloads never block evaluations.
type Engine struct {
	set   atomic.Pointer[installed]
	clock func() time.Time
	newID func() (string, error)
	log   *slog.Logger
	hook  func(Status)

	mu          sync.Mutex
	lastErr     error
	lastErrAt   time.Time
	reloadFails uint64
}

type installed struct {
	set *Set
	at  time.Time
}

// NewEngine returns an Engine serving set, which must not be nil: the
// service does not start without a good set.
func NewEngine(set *Set, opts EngineOptions) *Engine {
	e := &Engine{clock: opts.Clock, newID: opts.NewDecisionID, log: opts.Logger, hook: opts.OnReload}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.newID == nil {
		e.newID = func() (string, error) {
			id, err := uuid.NewV7()
			return id.String(), err
		}
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.set.Store(&installed{set: set, at: e.clock()})
	return e
}

// Evaluate validates req and decides it with the set in use. It returns a
// *FieldError (wrapping ErrInvalidRequest) for a bad request.
func (e *Engine) Evaluate(ctx context.Context, req Request) (Decision, error) {
	if err := req.Validate(); err != nil {
		return Decision{}, err
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	id, err := e.newID()
	if err != nil {
		return Decision{}, fmt.Errorf("decision id: %w", err)
	}
	now := req.Time
	if now.IsZero() {
		now = e.clock()
	}
	cur := e.set.Load().set
	d := cur.evaluate(&req, now)
	d.DecisionID = id
	for _, r := range d.Scopes {
		for _, pe := range r.Errors {
			// The message comes from Cedar and describes the policy (e.g. a
			// missing attribute), not the request's values.
			e.log.WarnContext(ctx, "policy failed to evaluate", "decision_id", id,
				"policy", pe.PolicyID, "scope", r.Scope, "error", pe.Message)
		}
	}
	return d, nil
}

// Install makes set the one in use and clears the last reload error.
func (e *Engine) Install(set *Set) {
	prev := e.set.Swap(&installed{set: set, at: e.clock()})
	e.clearReloadError()
	e.notify()
	e.log.Info("policy set installed", "version", set.Version(), "previous", prev.set.Version(),
		"source", set.Source(), "policies", len(set.ids))
}

func (e *Engine) clearReloadError() {
	e.mu.Lock()
	had := e.lastErr != nil
	e.lastErr, e.lastErrAt = nil, time.Time{}
	e.mu.Unlock()
	if had {
		e.notify()
	}
}

func (e *Engine) notify() {
	if e.hook != nil {
		e.hook(e.Status())
	}
}

// ReloadFailed records a failed reload; the set in use stays.
func (e *Engine) ReloadFailed(err error) {
	e.mu.Lock()
	e.lastErr, e.lastErrAt = err, e.clock()
	e.reloadFails++
	e.mu.Unlock()
	e.log.Error("policy reload failed; keeping the last good set",
		"version", e.Set().Version(), "error", err)
	e.notify()
}

// Set returns the set in use.
func (e *Engine) Set() *Set { return e.set.Load().set }

// Status describes the engine's state, for GetPolicySet and metrics.
type Status struct {
	Set       *Set
	LoadedAt  time.Time
	LastError error // of the last reload, nil once a later one succeeds
	LastErrAt time.Time
	// ReloadFailures counts every failed reload since start.
	ReloadFailures uint64
}

// Status returns the engine's state.
func (e *Engine) Status() Status {
	cur := e.set.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{Set: cur.set, LoadedAt: cur.at, LastError: e.lastErr, LastErrAt: e.lastErrAt, ReloadFailures: e.reloadFails}
}

// Explain decides req like Evaluate and says, per scope, what every policy
// of the set did and why. It costs a few Cedar evaluations per policy and
// scope: it is for operators, not for the issuance path.
func (e *Engine) Explain(ctx context.Context, req Request) (Explanation, error) {
	if err := req.Validate(); err != nil {
		return Explanation{}, err
	}
	if err := ctx.Err(); err != nil {
		return Explanation{}, err
	}
	id, err := e.newID()
	if err != nil {
		return Explanation{}, fmt.Errorf("decision id: %w", err)
	}
	now := req.Time
	if now.IsZero() {
		now = e.clock()
	}
	ex := e.set.Load().set.explain(&req, now)
	ex.Decision.DecisionID = id
	return ex, nil
}
