package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
)

// DefaultSweepLimit bounds the credentials one sweep script handles per
// shard, so that a burst of expiries does not stall Redis in one script.
const DefaultSweepLimit = 1000

// maxSweepLimit bounds the limit given to SweepExpired: the sweep script
// passes that many ids to one command with Lua's unpack, which has a bound
// (about 8,000).
const maxSweepLimit = 4096

// SweepExpired moves the expired events of every credential due by now into
// the outbox and removes what is left of those credentials (indexes,
// schedule, the key if Redis has not expired it yet), at most limit per
// shard (DefaultSweepLimit when not positive, maxSweepLimit at most). It
// returns how many credentials it swept. Any number of issuer replicas may
// sweep at once: each credential is swept by exactly one.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	n, _, err := s.sweep(ctx, now, limit)
	return n, err
}

// sweep runs the sweep script on every shard in one pipeline; more reports
// whether a shard hit the limit (and so may hold more that are due).
func (s *Store) sweep(ctx context.Context, now time.Time, limit int) (n int, more bool, err error) {
	if limit <= 0 {
		limit = DefaultSweepLimit
	}
	limit = min(limit, maxSweepLimit)
	nowMS := now.UnixMilli()
	subject := s.opts.Events.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	run := func(p redis.Scripter, sh shard) *redis.Cmd {
		return sweepScript.EvalSha(ctx, p, []string{sh.expiry, sh.expired, sh.outbox}, nowMS, limit, sh.prefix, subject)
	}
	cmds := make([]*redis.Cmd, len(s.shards))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range s.shards {
			cmds[i] = run(p, sh)
		}
		return nil
	})
	// A pipeline cannot fall back from EVALSHA to EVAL, so shards whose
	// Redis does not know the script yet (NOSCRIPT) are run again one by one.
	if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return 0, false, storeErr("sweep", err)
	}
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			sh := s.shards[i]
			cmds[i] = sweepScript.Run(ctx, s.rdb, []string{sh.expiry, sh.expired, sh.outbox}, nowMS, limit, sh.prefix, subject)
		}
		swept, err := cmds[i].Int()
		if err != nil {
			return n, more, storeErr("sweep", err)
		}
		n += swept
		more = more || swept == limit
	}
	if n > 0 {
		s.notify()
	}
	return n, more, nil
}

// RunSweeper sweeps every interval until ctx ends, at once again while
// shards hit the sweep limit. Failures are logged when they start and when
// they end, and retried at the next tick.
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for {
			_, more, err := s.sweep(ctx, s.opts.Clock(), DefaultSweepLimit)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !failing {
					s.opts.Logger.Warn("expiry sweep failed; retrying", "err", err)
					failing = true
				}
				break
			}
			if failing {
				s.opts.Logger.Info("expiry sweep recovered")
				failing = false
			}
			if !more {
				break
			}
		}
	}
}
