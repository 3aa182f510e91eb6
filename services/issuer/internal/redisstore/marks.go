package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

var markLua = redis.NewScript(redisscripts.Mark.Source)

// markCall is a run of mark.lua.
type markCall struct {
	Marks string `key:"marks"`
	// Index is the delegator's (agent's) index in the shard.
	Index string `key:"index"`

	Member      string `arg:"member"`
	RetentionMS int64  `arg:"retention_ms"`
}

func (c *markCall) keysArgs() ([]string, []any) {
	return []string{c.Marks, c.Index}, []any{c.Member, c.RetentionMS}
}

// Run runs the script and returns the mark written (µs of Redis's clock),
// or 0 when the index is empty and no mark was written.
func (c *markCall) Run(ctx context.Context, rdb redis.Scripter) (int64, error) {
	keys, args := c.keysArgs()
	v, err := markLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return 0, err
	}
	return decodeMark(v)
}

func decodeMark(v any) (int64, error) {
	at, err := replyInt("mark", v)
	if err != nil {
		return 0, err
	}
	if at < 0 {
		return 0, fmt.Errorf("%w from mark: %d", errUnexpectedReply, at)
	}
	return at, nil
}

// markMember is the member of sel's revocation marks.
func markMember(sel issuer.Selector) string {
	if sel.Kind == issuer.ByAgent {
		return redisscripts.MarkAgent + sel.ID
	}
	return redisscripts.MarkDelegator + sel.ID
}

// mark writes sel's revocation mark in every shard whose index lists
// credentials of it, in one pipelined round trip, and returns those shards.
func (s *Store) mark(ctx context.Context, sel issuer.Selector) ([]int, error) {
	calls := make([]scriptCall, len(s.shards))
	member, retention := markMember(sel), s.opts.MarkRetention.Milliseconds()
	for i, sh := range s.shards {
		c := markCall{Marks: sh.marks, Index: indexKey(sh, sel), Member: member, RetentionMS: retention}
		calls[i].keys, calls[i].args = c.keysArgs()
	}
	cmds, err := s.evalEach(ctx, markLua, calls)
	if err != nil {
		return nil, storeErr("write revocation marks", err)
	}
	var shards []int
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			return nil, storeErr("write revocation marks", err)
		}
		at, err := decodeMark(v)
		if err != nil {
			return nil, err
		}
		if at != 0 {
			shards = append(shards, i)
		}
	}
	return shards, nil
}
