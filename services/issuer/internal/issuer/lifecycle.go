package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	identityv1 "github.com/jitid/jitid/proto/jitid/identity/v1"
)

// Page sizes of List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Introspect says whether token is an active credential (RFC 7662
// semantics): signed by one of the issuer's keys, within its validity
// window, presented with a valid DPoP proof when it is bound to a key
// (cnf), still live in the store, and, when use-limited, not used up. A
// forged, malformed, expired, revoked, unknown, unproven or used-up token
// is inactive (nil, nil), not an error; only a store failure is an error,
// since then the answer is unknown.
//
// An active credential is reported active only to caller when it may
// learn so (RFC 7662 §4): the credential's owner, an admin, or a resource
// server of its audience. To anyone else it is inactive, and a
// use-limited credential counts no use for them.
//
// Each presentation of a use-limited credential (max_uses above zero)
// counts one use, in the same atomic step that checks its liveness; the
// presentation past max_uses is inactive and recorded as a use_refused
// event (a replay attempt) naming caller. A presentation refused before
// the store is asked (bad signature, bad proof) counts no use.
func (s *Issuer) Introspect(ctx context.Context, caller, token string, proof Proof) (*Credential, error) {
	if token == "" || caller == "" {
		return nil, nil
	}
	claimed, err := s.signer.Verify(token)
	if err != nil {
		// The reason, never the token.
		s.log.DebugContext(ctx, "introspection: token refused", "error", err)
		return nil, nil
	}
	if claimed.CnfJKT != "" {
		if err := s.signer.CheckProof(token, claimed, proof); err != nil {
			s.log.InfoContext(ctx, "introspection: key-bound credential without a valid proof",
				"credential_id", claimed.ID, "error", err)
			return nil, nil
		}
	}
	var c *Credential
	if claimed.MaxUses > 0 {
		// The owner is only in the store: read first, both to check that
		// caller may learn about the credential before a use is counted,
		// and to name the owner in a use_refused event.
		var stored *Credential
		stored, err = s.store.Get(ctx, claimed.ID, claimed.Task.GetId())
		if stored, err = s.matchStored(ctx, claimed, stored, err); stored == nil || err != nil {
			return nil, err
		}
		if !s.mayIntrospect(caller, stored) {
			s.log.InfoContext(ctx, "introspection: caller may not introspect the credential",
				"credential_id", claimed.ID, "caller", caller)
			return nil, nil
		}
		refused := s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_USE_REFUSED, stored, s.now(),
			fmt.Sprintf("presented past max_uses (%d): possible replay", claimed.MaxUses), caller)
		c, err = s.store.Use(ctx, claimed.ID, claimed.Task.GetId(), refused)
		if errors.Is(err, ErrUsedUp) {
			s.log.WarnContext(ctx, "introspection: credential used up, use refused", "credential_id", claimed.ID,
				"max_uses", claimed.MaxUses, "event_id", refused.GetId())
			return nil, nil
		}
	} else {
		c, err = s.store.Get(ctx, claimed.ID, claimed.Task.GetId())
	}
	c, err = s.matchStored(ctx, claimed, c, err)
	if c == nil || err != nil {
		return nil, err
	}
	if !s.mayIntrospect(caller, c) {
		s.log.InfoContext(ctx, "introspection: caller may not introspect the credential",
			"credential_id", c.ID, "caller", caller)
		return nil, nil
	}
	return c, nil
}

// active is Introspect without a proof and without counting a use: for
// the issuer's own checks of a subject token.
func (s *Issuer) active(ctx context.Context, token string) (*Credential, error) {
	claimed, err := s.signer.Verify(token)
	if err != nil {
		s.log.DebugContext(ctx, "subject token refused", "error", err)
		return nil, nil
	}
	c, err := s.store.Get(ctx, claimed.ID, claimed.Task.GetId())
	return s.matchStored(ctx, claimed, c, err)
}

func (s *Issuer) matchStored(ctx context.Context, claimed, c *Credential, err error) (*Credential, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up credential %s: %w", claimed.ID, err)
	}
	// A valid signature over an id the store knows, but for someone else,
	// would mean a signing key or the store went wrong: never active.
	if c.Delegator.GetId() != claimed.Delegator.GetId() || c.Agent.GetId() != claimed.Agent.GetId() ||
		c.Task.GetId() != claimed.Task.GetId() || c.Audience != claimed.Audience ||
		c.CnfJKT != claimed.CnfJKT || c.MaxUses != claimed.MaxUses {
		s.log.ErrorContext(ctx, "introspection: token and stored credential disagree", "credential_id", c.ID)
		return nil, nil
	}
	return c, nil
}

// Revoke revokes every live credential sel names, writing one revoked event
// per credential with its delegation context, reason and caller. It
// returns the ids revoked; revoking by credential id something not live is
// ErrNotFound. A credential or task that caller does not own is
// ErrCallerNotAllowed; by agent or delegator, caller revokes only its own
// credentials. An admin revokes across platforms.
func (s *Issuer) Revoke(ctx context.Context, caller string, sel Selector, reason string) ([]string, error) {
	if err := validateSelector(sel); err != nil {
		return nil, err
	}
	if err := validateText("reason", reason, MaxReasonBytes); err != nil {
		return nil, err
	}
	sel, err := s.authorizeRevoke(ctx, caller, sel)
	if err != nil {
		return nil, err
	}
	ids, err := s.store.Revoke(ctx, sel, func(c *Credential) *eventsv1.LifecycleEvent {
		return s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, c, s.now(), reason, caller)
	})
	if err != nil {
		return nil, fmt.Errorf("revoke by %s %q: %w", selectorField(sel.Kind), sel.ID, err)
	}
	if sel.Kind == ByCredential && len(ids) == 0 {
		return nil, ErrNotFound
	}
	s.log.InfoContext(ctx, "credentials revoked", "by", selectorField(sel.Kind), "id", sel.ID,
		"count", len(ids), loggedIDs(ids), "reason", reason, "caller", caller, "owner", sel.Owner)
	return ids, nil
}

// maxLoggedIDs bounds the credential ids a log line lists: revoking a
// delegator may revoke a hundred thousand, and one line of them all helps
// nobody (the revoked events name each one).
const maxLoggedIDs = 20

// loggedIDs is the credential_ids attribute of a log line: the ids when
// few, otherwise an empty attribute, which handlers leave out (the count
// is logged beside it).
func loggedIDs(ids []string) slog.Attr {
	if len(ids) > maxLoggedIDs {
		return slog.Attr{}
	}
	return slog.Any("credential_ids", ids)
}

// CompleteTask revokes every live credential of the task and records the
// task's end; nothing more is issued for it (ErrTaskCompleted). It returns
// the ids revoked. Only the task's owner or an admin may complete it
// (ErrCallerNotAllowed); a task never issued for is ErrTaskNotFound, so
// that nobody can block another platform's future task.
func (s *Issuer) CompleteTask(ctx context.Context, caller, taskID, reason string) ([]string, error) {
	if err := validateID("task_id", taskID); err != nil {
		return nil, err
	}
	if err := validateText("reason", reason, MaxReasonBytes); err != nil {
		return nil, err
	}
	if caller == "" {
		return nil, ErrCallerNotAllowed
	}
	// The owner never changes while the task is remembered: read ahead of
	// the script (which checks it again) for the completed event.
	owner, err := s.store.TaskOwner(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("complete task %q: %w", taskID, err)
	}
	now := s.now()
	revokeReason := "task completed"
	if reason != "" {
		revokeReason += ": " + reason
	}
	completed := &eventsv1.LifecycleEvent{
		Id:     s.newID(),
		Type:   eventsv1.EventType_EVENT_TYPE_TASK_COMPLETED,
		Time:   timestamppb.New(now),
		Task:   &identityv1.Task{Id: taskID},
		Reason: reason,
		Issuer: s.cfg.Issuer,
		Caller: caller,
		Owner:  owner,
	}
	ids, err := s.store.CompleteTask(ctx, taskID, caller, s.isAdmin(caller), func(c *Credential) *eventsv1.LifecycleEvent {
		return s.credentialEvent(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_REVOKED, c, s.now(), revokeReason, caller)
	}, completed)
	if err != nil {
		return nil, fmt.Errorf("complete task %q: %w", taskID, err)
	}
	s.log.InfoContext(ctx, "task completed", "task_id", taskID, "revoked", len(ids), loggedIDs(ids), "reason", reason, "caller", caller)
	return ids, nil
}

// List returns live credentials of a task, an agent or a delegator, page
// by page; metadata only, the store has no tokens. pageSize 0 means
// DefaultPageSize. A platform sees only the credentials it owns; an admin
// sees all.
func (s *Issuer) List(ctx context.Context, caller string, sel Selector, pageSize int, pageToken string) (Page, error) {
	if sel.Kind == ByCredential {
		return Page{}, invalid("selector", "list by task_id, agent_id or delegator_id")
	}
	if err := validateSelector(sel); err != nil {
		return Page{}, err
	}
	switch {
	case pageSize < 0 || pageSize > MaxPageSize:
		return Page{}, invalid("page_size", "must be between 0 and %d", MaxPageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	}
	if err := validateText("page_token", pageToken, 4*MaxIDBytes); err != nil {
		return Page{}, err
	}
	sel.Owner = ""
	if caller == "" {
		return Page{}, ErrCallerNotAllowed
	}
	if !s.isAdmin(caller) {
		sel.Owner = caller
	}
	p, err := s.store.List(ctx, sel, pageSize, pageToken)
	if errors.Is(err, ErrBadPageToken) {
		return Page{}, &InvalidArgumentError{Field: "page_token", Reason: err.Error()}
	}
	if err != nil {
		return Page{}, fmt.Errorf("list by %s %q: %w", selectorField(sel.Kind), sel.ID, err)
	}
	return p, nil
}
