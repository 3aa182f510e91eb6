package redisstore

import (
	"context"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// A delegator's credentials are in the shards of their tasks, so that no
// one script can count them: the quota is a sorted set of its own, in the
// delegator's home shard, of the delegator's live credentials by expiry.
// quota.lua holds a place in it before the issue script runs, atomically
// with the count, so that concurrent issuances never exceed the quota; the
// place is released when the issue script refuses the credential and when
// the credential is revoked, and lapses at its expiry. A release that
// fails (Redis gone meanwhile) leaves the place held until the credential
// would have expired: the quota counts one too many, never one too few.

var quotaLua = redis.NewScript(redisscripts.Quota.Source)

// quotaCall is a run of quota.lua.
type quotaCall struct {
	Quota string `key:"quota"`

	NowMS    int64  `arg:"now_ms"`
	Limit    int64  `arg:"limit"`
	ID       string `arg:"id"`
	ExpireMS int64  `arg:"expire_ms"`
}

// quotaResult is what quota.lua did: held the place, or found the quota
// full and the earliest expiry (ms) of the places held.
type quotaResult struct {
	held     bool
	earliest int64
}

func (c *quotaCall) keysArgs() ([]string, []any) {
	return []string{c.Quota}, []any{c.NowMS, c.Limit, c.ID, c.ExpireMS}
}

// Run runs the script.
func (c *quotaCall) Run(ctx context.Context, rdb redis.Scripter) (quotaResult, error) {
	keys, args := c.keysArgs()
	v, err := quotaLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return quotaResult{}, err
	}
	return decodeQuota(v)
}

func decodeQuota(v any) (quotaResult, error) {
	state, rest, err := replyArray("quota", v)
	if err != nil {
		return quotaResult{}, err
	}
	switch {
	case state == 1 && len(rest) == 0:
		return quotaResult{held: true}, nil
	case state == 0 && len(rest) == 1:
		ms, err := replyInt("quota", rest[0])
		return quotaResult{earliest: ms}, err
	}
	return quotaResult{}, fmt.Errorf("%w from quota: state %d with %d more elements", errUnexpectedReply, state, len(rest))
}

// quotaKey returns the key of a delegator's quota, in its home shard.
func (s *Store) quotaKey(delegatorID string) string {
	i := crc32.ChecksumIEEE([]byte(delegatorID)) % uint32(len(s.shards))
	return s.shards[i].quota(delegatorID)
}

// holdQuota holds a place for c in its delegator's quota; a full quota is
// a *issuer.QuotaError whose RetryAfter is the time until the earliest of
// the delegator's live credentials expires.
func (s *Store) holdQuota(ctx context.Context, c *issuer.Credential) error {
	if s.opts.DelegatorQuota <= 0 {
		return nil
	}
	now := s.opts.Clock()
	call := quotaCall{Quota: s.quotaKey(c.Delegator.GetId()), NowMS: now.UnixMilli(),
		Limit: int64(s.opts.DelegatorQuota), ID: c.ID, ExpireMS: c.ExpiresAt.UnixMilli()}
	res, err := call.Run(ctx, s.rdb)
	if err != nil {
		return storeErr("delegator quota", err)
	}
	if res.held {
		return nil
	}
	retry := max(time.UnixMilli(res.earliest).Sub(now), time.Millisecond)
	return fmt.Errorf("redisstore: issue %s: %w", c.ID,
		&issuer.QuotaError{Delegator: c.Delegator.GetId(), Quota: s.opts.DelegatorQuota, RetryAfter: retry})
}

// releaseQuota releases the places of credentials (id → delegator id) in
// their delegators' quotas, in one round trip. A failure is logged: the
// places lapse when the credentials would have expired.
func (s *Store) releaseQuota(ctx context.Context, delegators map[string]string) {
	if s.opts.DelegatorQuota <= 0 || len(delegators) == 0 {
		return
	}
	// Released even when the call that revoked them was canceled since.
	ctx = context.WithoutCancel(ctx)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for id, d := range delegators {
			p.ZRem(ctx, s.quotaKey(d), id)
		}
		return nil
	})
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "delegator quota places not released: they lapse at the credentials' expiry",
			"credentials", len(delegators), "error", err)
	}
}
