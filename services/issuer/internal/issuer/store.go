package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Credential is what the issuer keeps about a live credential. The token
// itself is never stored: it is returned once, to the caller.
type Credential struct {
	// ID is the JWT "jti".
	ID        string
	Issuer    string
	Audience  string
	Agent     *identityv1.Agent
	Delegator *identityv1.Delegator
	Task      *identityv1.Task
	Scopes    []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Profile   identityv1.Profile
	// PolicyVersion and DecisionID name the decision that allowed it.
	PolicyVersion string
	DecisionID    string
	// ParentID is the credential this one was exchanged from (a sub-agent's
	// credential); empty for one issued directly.
	ParentID string
	// Chain lists the agents above Agent, nearest parent first, each with
	// the scopes its credential held; empty for one issued directly.
	Chain []ChainLink
	// MaxUses, when above zero, is how many times the credential may be
	// presented for introspection; Uses is how many times it was (as of
	// the presentation that read it).
	MaxUses int
	Uses    int
	// CnfJKT is the RFC 7638 thumbprint of the key the credential is bound
	// to (RFC 7800 "cnf"); empty for a bearer credential.
	CnfJKT string
	// Owner is the platform (authenticated caller) that issued the
	// credential; only it, an admin or its audience may act on it.
	Owner string
	// AssertedBy names the platform that asserted the delegator without a
	// subject token; empty when an identity provider's token proved it.
	AssertedBy string
}

// ChainLink is one agent above a sub-agent and the scopes it held.
type ChainLink struct {
	Agent  *identityv1.Agent
	Scopes []string
}

// AgentChain returns the ids of the agents above the credential's agent,
// nearest parent first.
func (c *Credential) AgentChain() []string {
	if len(c.Chain) == 0 {
		return nil
	}
	ids := make([]string, len(c.Chain))
	for i, l := range c.Chain {
		ids[i] = l.Agent.GetId()
	}
	return ids
}

// SelectorKind says which index a Selector walks.
type SelectorKind int

// Selector kinds.
const (
	ByCredential SelectorKind = iota + 1
	ByTask
	ByAgent
	ByDelegator
)

// Selector names a set of credentials: one credential, or all of a task,
// an agent or a delegator.
type Selector struct {
	Kind SelectorKind
	ID   string
	// Owner, when set, narrows the set to the credentials that platform
	// owns: a platform lists and revokes only its own. Empty: every owner
	// (an admin's call).
	Owner string
}

// Page is one page of a listing.
type Page struct {
	Credentials []*Credential
	// NextToken is empty on the last page.
	NextToken string
}

// Store errors.
var (
	// ErrNotFound means no live credential matches.
	ErrNotFound = errors.New("credential not found or no longer live")
	// ErrTaskCompleted means the task was completed; nothing more is issued for it.
	ErrTaskCompleted = errors.New("task already completed")
	// ErrStoreUnavailable wraps a storage failure (Redis down or timing out).
	ErrStoreUnavailable = errors.New("credential store unavailable")
	// ErrBadPageToken means a page token was not one the store handed out.
	ErrBadPageToken = errors.New("malformed page token")
	// ErrUsedUp means a use-limited credential was presented once more than
	// its max_uses allows (a replay attempt); the use_refused event was
	// written.
	ErrUsedUp = errors.New("credential used up (max_uses reached)")
	// ErrTaskNotFound means no credential was ever issued for the task (or
	// so long ago that its owner is forgotten): there is nothing to complete.
	ErrTaskNotFound = errors.New("task not found: no credential was issued for it")
	// ErrCallerNotAllowed means the caller is not the owner of the
	// credential or task it acts on (nor an admin); nothing was written.
	ErrCallerNotAllowed = errors.New("caller not allowed: the credential or task belongs to another platform")
	// ErrQuotaExceeded is matched by every *QuotaError.
	ErrQuotaExceeded = errors.New("delegator quota of live credentials exceeded")
)

// QuotaError says that the delegator holds as many live credentials as
// its quota allows; nothing was written.
type QuotaError struct {
	Delegator string
	Quota     int
	// RetryAfter is the time until the delegator's earliest live
	// credential expires, freeing a place.
	RetryAfter time.Duration
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("delegator %q holds %d live credentials, its quota: retry in %v or revoke one",
		e.Delegator, e.Quota, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

// EventFunc builds the lifecycle event of one credential (revoked), called
// by the store with the credential as it was stored, possibly from several
// goroutines at once.
type EventFunc func(c *Credential) *eventsv1.LifecycleEvent

// store is what the issuer needs from storage. Every write puts its
// lifecycle events into the outbox in the same atomic step, so that no
// state change goes unrecorded and none is recorded that did not happen.
type store interface {
	// Issue writes the credential (liveness = its key's TTL, ending at
	// ExpiresAt), its task/agent/delegator indexes, its expiry schedule, the
	// issued event, and the expired event kept for the sweeper to emit at
	// ExpiresAt, in one atomic step. ErrTaskCompleted when the task was
	// completed before. The task's owner is recorded by its first issuance;
	// an issuance (or exchange) into a task owned by another platform than
	// c.Owner is ErrCallerNotAllowed. A delegator holding its quota of live
	// credentials already is a *QuotaError. When c.ParentID is set (an exchange; issued is then
	// the exchanged event), the parent must still be live, else ErrNotFound,
	// and the credential is recorded as the parent's child in the same step,
	// so that revoking the parent revokes it.
	Issue(ctx context.Context, c *Credential, issued, expired *eventsv1.LifecycleEvent) error
	// Use counts one presentation of a live use-limited credential and
	// returns it with Uses counted, checking liveness and counting in one
	// atomic step. The presentation past MaxUses is ErrUsedUp, and refused is
	// written to the outbox in that same step. ErrNotFound when not live.
	Use(ctx context.Context, id, taskID string, refused *eventsv1.LifecycleEvent) (*Credential, error)
	// AppendEvent writes one event to the outbox (e.g. denied), under the
	// shard of taskID.
	AppendEvent(ctx context.Context, taskID string, ev *eventsv1.LifecycleEvent) error
	// Get returns a live credential. taskID may be empty (the store then
	// looks in every shard). ErrNotFound when revoked, expired or unknown.
	Get(ctx context.Context, id, taskID string) (*Credential, error)
	// List returns live credentials of a task, agent or delegator, page by page.
	List(ctx context.Context, sel Selector, pageSize int, pageToken string) (Page, error)
	// Revoke removes every live credential the selector names, and every
	// live credential exchanged from them, down the chain (of
	// sel.Owner only, when set: then no revocation mark is written, since
	// a mark would hide other owners' credentials too). Each one is
	// deleted together with its indexes, its expiry schedule and the event
	// mkEvent builds for it, atomically; a credential that expired or was
	// revoked meanwhile yields no event. It returns the ids revoked. By
	// agent or delegator, every credential it names is inactive (Get, List,
	// Use, Issue of a child) from the start of the call, before each one is
	// deleted; should the call fail, they stay inactive, and calling again
	// writes the events still missing.
	Revoke(ctx context.Context, sel Selector, mkEvent EventFunc) ([]string, error)
	// CompleteTask revokes every live credential of the task (as Revoke), marks
	// the task completed (Issue then fails with ErrTaskCompleted) and writes
	// the completed event, in one atomic step. It returns the ids revoked.
	// A task never issued for is ErrTaskNotFound; a task owned by another
	// platform than caller, unless admin, ErrCallerNotAllowed; nothing is
	// written then.
	CompleteTask(ctx context.Context, taskID, caller string, admin bool, mkEvent EventFunc, completed *eventsv1.LifecycleEvent) ([]string, error)
	// TaskOwner returns the platform that owns a task; empty when no
	// credential was issued for it.
	TaskOwner(ctx context.Context, taskID string) (string, error)
}
