package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// DefaultSweepLimit bounds the credentials one sweep script handles, so
// that Redis answers other clients between scripts during a burst of
// expiries: a script of 100 holds Redis for about 1 ms. (Scripts of 100,
// 200 and 400 sweep as fast as one another; the smaller, the shorter
// other clients wait.)
const DefaultSweepLimit = 100

// maxSweepLimit bounds the limit given to SweepExpired: the sweep script
// passes that many ids to one command with Lua's unpack, which has a bound
// (about 8,000).
const maxSweepLimit = 4096

var sweepLua = redis.NewScript(redisscripts.Sweep.Source)

// sweepCall is a run of sweep.lua.
type sweepCall struct {
	Expiry  string `key:"expiry"`
	Expired string `key:"expired"`
	Outbox  string `key:"outbox"`

	NowMS int64 `arg:"now_ms"`
	// Limit is at most maxSweepLimit.
	Limit int64 `arg:"limit"`
	// Prefix is the shard's key prefix.
	Prefix string `arg:"prefix"`
	// Subject is the subject of expired events.
	Subject string `arg:"subject"`
}

// sweepResult counts the credentials a sweep removed, and among them those
// whose expired record could not be read (no event written).
type sweepResult struct {
	swept, unreadable int64
}

func (c *sweepCall) keysArgs() ([]string, []any) {
	return []string{c.Expiry, c.Expired, c.Outbox}, []any{c.NowMS, c.Limit, c.Prefix, c.Subject}
}

// Run runs the script.
func (c *sweepCall) Run(ctx context.Context, rdb redis.Scripter) (sweepResult, error) {
	keys, args := c.keysArgs()
	v, err := sweepLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return sweepResult{}, err
	}
	return decodeSweep(v)
}

func decodeSweep(v any) (sweepResult, error) {
	swept, rest, err := replyArray("sweep", v)
	if err != nil {
		return sweepResult{}, err
	}
	if len(rest) != 1 {
		return sweepResult{}, fmt.Errorf("%w from sweep: %d elements", errUnexpectedReply, len(rest)+1)
	}
	bad, err := replyInt("sweep", rest[0])
	if err != nil {
		return sweepResult{}, err
	}
	if swept < 0 || bad < 0 || bad > swept {
		return sweepResult{}, fmt.Errorf("%w from sweep: %d swept, %d unreadable", errUnexpectedReply, swept, bad)
	}
	return sweepResult{swept: swept, unreadable: bad}, nil
}

// SweepExpired moves the expired events of every credential due by now into
// the outbox and removes what is left of those credentials (indexes,
// schedule, the key if Redis has not expired it yet), at most limit per
// shard (DefaultSweepLimit when not positive, maxSweepLimit at most). It
// returns how many credentials it swept. Any number of issuer replicas may
// sweep at once: each credential is swept by exactly one.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	n, _, err := s.sweep(ctx, now, limit, nil)
	return n, err
}

// sweep runs the sweep script on the given shards (every shard when nil),
// one script per round trip: a pipeline would have Redis run them back to
// back, and keep other clients waiting for all of them. It wakes the relay
// after each script that swept something, so that events go out while the
// rest is swept. full lists the shards that hit the limit, and so may hold
// more that are due.
func (s *Store) sweep(ctx context.Context, now time.Time, limit int, shards []int) (n int, full []int, err error) {
	if limit <= 0 {
		limit = DefaultSweepLimit
	}
	limit = min(limit, maxSweepLimit)
	if shards == nil {
		shards = make([]int, len(s.shards))
		for i := range shards {
			shards[i] = i
		}
	}
	nowMS := now.UnixMilli()
	subject := s.opts.Events.Subject(eventsv1.EventType_EVENT_TYPE_CREDENTIAL_EXPIRED)
	for _, i := range shards {
		sh := s.shards[i]
		call := sweepCall{Expiry: sh.expiry, Expired: sh.expired, Outbox: sh.outbox,
			NowMS: nowMS, Limit: int64(limit), Prefix: sh.prefix, Subject: subject}
		res, err := call.Run(ctx, s.sweepClient())
		if err != nil {
			return n, full, storeErr("sweep", err)
		}
		swept := int(res.swept)
		if res.unreadable > 0 {
			s.opts.Logger.Error("expiry sweep: expired records that cannot be read removed; their expired events are lost",
				"shard", i, "records", res.unreadable)
		}
		if swept > 0 {
			n += swept
			s.notify()
		}
		if swept == limit {
			full = append(full, i)
		}
	}
	return n, full, nil
}

// sweepClient returns the client of the sweeper.
func (s *Store) sweepClient() redis.UniversalClient {
	if s.opts.SweepClient != nil {
		return s.opts.SweepClient
	}
	return s.rdb
}

// RunSweeper sweeps every interval until ctx ends, and back to back the
// shards that hit the sweep limit, until none does. Failures are logged
// when they start and when they end, and retried at the next tick.
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
		var shards []int // every shard
		for {
			_, full, err := s.sweep(ctx, s.opts.Clock(), DefaultSweepLimit, shards)
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
			if len(full) == 0 {
				break
			}
			shards = full
		}
	}
}
