package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrNotAllowed is returned (wrapped) by an Authorizer that refuses a peer.
var ErrNotAllowed = errors.New("mtls: peer SPIFFE ID not allowed")

// Authorizer decides whether a peer whose certificate chain has already been
// verified against the trust bundle may talk to us. It returns nil to accept
// and an error (wrapping ErrNotAllowed) to refuse; the error fails the TLS
// handshake. Its signature is go-spiffe's tlsconfig.Authorizer.
type Authorizer func(id spiffeid.ID, verifiedChains [][]*x509.Certificate) error

// AllowIDs accepts exactly the given SPIFFE IDs. With no IDs it refuses
// everyone.
func AllowIDs(ids ...spiffeid.ID) Authorizer {
	allowed := make(map[spiffeid.ID]struct{}, len(ids))
	for _, id := range ids {
		allowed[id] = struct{}{}
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if _, ok := allowed[id]; ok {
			return nil
		}
		return fmt.Errorf("%w: %s is not in the allow-list", ErrNotAllowed, id)
	}
}

// AllowTrustDomain accepts every SPIFFE ID of the trust domain td.
func AllowTrustDomain(td spiffeid.TrustDomain) Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if id.MemberOf(td) {
			return nil
		}
		return fmt.Errorf("%w: %s is not a member of trust domain %s", ErrNotAllowed, id, td)
	}
}

// AnyOf accepts a peer that at least one of the authorizers accepts. With no
// authorizers it refuses everyone.
func AnyOf(authorizers ...Authorizer) Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		for _, a := range authorizers {
			if a != nil && a(id, chains) == nil {
				return nil
			}
		}
		return fmt.Errorf("%w: %s matches none of the allowed identities", ErrNotAllowed, id)
	}
}

// denyAll stands in for a nil Authorizer, so that forgetting one fails closed.
func denyAll(id spiffeid.ID, _ [][]*x509.Certificate) error {
	return fmt.Errorf("%w: no authorizer configured, refusing %s", ErrNotAllowed, id)
}

// ParseAllowList builds an Authorizer from configuration entries: an entry
// with a path ("spiffe://acme.example/policy") allows that one ID, an entry
// without one ("spiffe://acme.example") allows every member of the trust
// domain. An empty list is an error rather than an Authorizer that refuses
// everyone, since it is always a configuration mistake.
func ParseAllowList(entries []string) (Authorizer, error) {
	if len(entries) == 0 {
		return nil, errors.New("mtls: empty SPIFFE ID allow-list")
	}
	var ids []spiffeid.ID
	var authorizers []Authorizer
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		id, err := spiffeid.FromString(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("mtls: allow-list entry %q: %w", e, err))
			continue
		}
		if id.Path() == "" {
			authorizers = append(authorizers, AllowTrustDomain(id.TrustDomain()))
			continue
		}
		ids = append(ids, id)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		authorizers = append(authorizers, AllowIDs(ids...))
	}
	if len(authorizers) == 1 {
		return authorizers[0], nil
	}
	return AnyOf(authorizers...), nil
}
