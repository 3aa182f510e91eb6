package issuer

import (
	"context"
	"fmt"
	"slices"
)

// isAdmin reports whether caller is one of the configured admins.
func (s *Issuer) isAdmin(caller string) bool {
	return caller != "" && slices.Contains(s.cfg.Admins, caller)
}

// servesAudience reports whether caller is a resource server of aud: the
// audience itself, or a caller mapped to it.
func (s *Issuer) servesAudience(caller, aud string) bool {
	return caller != "" && (caller == aud || slices.Contains(s.cfg.ResourceServers[aud], caller))
}

// mayIntrospect reports whether caller may learn that c is active: its
// owner, an admin, or a resource server of its audience (RFC 7662 §4).
func (s *Issuer) mayIntrospect(caller string, c *Credential) bool {
	return caller != "" && (caller == c.Owner || s.isAdmin(caller) || s.servesAudience(caller, c.Audience))
}

// authorizeRevoke returns sel as caller may revoke it: one credential or a
// task only when caller owns it (else ErrCallerNotAllowed), an agent's or a
// delegator's credentials narrowed to caller's own. An admin's selector
// is left as it is.
func (s *Issuer) authorizeRevoke(ctx context.Context, caller string, sel Selector) (Selector, error) {
	switch {
	case caller == "":
		return sel, ErrCallerNotAllowed
	case s.isAdmin(caller):
		return sel, nil
	}
	switch sel.Kind {
	case ByCredential:
		c, err := s.store.Get(ctx, sel.ID, "")
		if err != nil {
			return sel, fmt.Errorf("revoke credential %q: %w", sel.ID, err)
		}
		if c.Owner != caller {
			return sel, fmt.Errorf("revoke credential %q: %w", sel.ID, ErrCallerNotAllowed)
		}
	case ByTask:
		owner, err := s.store.TaskOwner(ctx, sel.ID)
		if err != nil {
			return sel, fmt.Errorf("revoke task %q: %w", sel.ID, err)
		}
		// A task without an owner has no credentials: revoking it revokes
		// nothing, for anyone.
		if owner != "" && owner != caller {
			return sel, fmt.Errorf("revoke task %q: %w", sel.ID, ErrCallerNotAllowed)
		}
	case ByAgent, ByDelegator:
		sel.Owner = caller
	}
	return sel, nil
}
