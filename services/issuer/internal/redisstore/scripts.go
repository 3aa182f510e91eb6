package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts (package redisscripts) are the only writers of the
// store's keys. Each touches the keys of one shard only, all under one hash
// tag, so each runs on one Redis Cluster node as one atomic step. KEYS are
// always declared, except where a script derives a credential's or an
// index's key from the shard prefix it is given: those share the declared
// keys' hash tag, hence their slot, which Redis Cluster accepts.
//
// Each script runs behind one wrapper, a struct of its named keys and
// arguments: keysArgs builds KEYS and ARGV in the order the script's
// header states, Run runs it and decodes its reply, and the decoding
// refuses a reply of another shape than the script's. The struct tags
// (key, arg; items for a part that comes once per item) name each field
// as the header does, for the test that holds the two together.

// errUnexpectedReply means a script answered with a reply of a shape it
// never returns: the script and its wrapper disagree, a bug.
var errUnexpectedReply = errors.New("redisstore: unexpected script reply")

// badReply reports a reply of an unexpected shape. It gives the type only:
// a reply may hold a credential.
func badReply(script string, v any) error {
	return fmt.Errorf("%w from %s: %T", errUnexpectedReply, script, v)
}

// replyInt returns an integer reply.
func replyInt(script string, v any) (int64, error) {
	n, ok := v.(int64)
	if !ok {
		return 0, badReply(script, v)
	}
	return n, nil
}

// replyArray returns an array reply whose first element is an integer,
// the script's state, and the rest.
func replyArray(script string, v any) (state int64, rest []any, err error) {
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return 0, nil, badReply(script, v)
	}
	if state, err = replyInt(script, a[0]); err != nil {
		return 0, nil, err
	}
	return state, a[1:], nil
}

// replyStrings returns the elements of an array reply, each a string.
func replyStrings(script string, a []any) ([]string, error) {
	out := make([]string, len(a))
	for i, v := range a {
		s, ok := v.(string)
		if !ok {
			return nil, badReply(script, v)
		}
		out[i] = s
	}
	return out, nil
}

// scriptCall is one run of a script: its keys and arguments.
type scriptCall struct {
	keys []string
	args []any
}

// evalEach runs script once per call in one pipelined round trip. A
// pipeline cannot fall back from EVALSHA to EVAL, so the calls Redis
// answers NOSCRIPT (its script cache restarted or flushed) run again one
// by one through Script.Run, which loads the script. Each call's error is
// in its Cmd.
func (s *Store) evalEach(ctx context.Context, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return nil, err
	}
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmds[i] = script.Run(ctx, s.rdb, calls[i].keys, calls[i].args...)
		}
	}
	return cmds, nil
}
