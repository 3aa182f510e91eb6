package redisstore

import (
	"context"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// MarkRevoked writes sel's revocation marks and nothing else: the state a
// revocation by agent or delegator is in between its marks and its first
// script.
func (s *Store) MarkRevoked(ctx context.Context, sel issuer.Selector) error {
	_, err := s.mark(ctx, sel)
	return err
}
