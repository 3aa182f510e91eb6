package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

var useLua = redis.NewScript(redisscripts.Use.Source)

// useCall is a run of use.lua.
type useCall struct {
	Cred   string `key:"cred"`
	Outbox string `key:"outbox"`
	Marks  string `key:"marks"`

	EventID string `arg:"event_id"`
	Subject string `arg:"subject"`
	Payload []byte `arg:"payload"`
}

// useResult is what use.lua found: the credential not live, used up (and
// the event written), or live with this use counted, its hash in hash.
type useResult struct {
	state useState
	uses  int64
	hash  map[string]string
}

type useState int64

const (
	useNotLive useState = 0
	useCounted useState = 1
	useUsedUp  useState = 2
)

func (c *useCall) keysArgs() ([]string, []any) {
	return []string{c.Cred, c.Outbox, c.Marks}, []any{c.EventID, c.Subject, c.Payload}
}

// Run runs the script.
func (c *useCall) Run(ctx context.Context, rdb redis.Scripter) (useResult, error) {
	keys, args := c.keysArgs()
	v, err := useLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return useResult{}, err
	}
	return decodeUse(v)
}

func decodeUse(v any) (useResult, error) {
	state, rest, err := replyArray("use", v)
	if err != nil {
		return useResult{}, err
	}
	r := useResult{state: useState(state)}
	switch r.state {
	case useNotLive:
		if len(rest) == 0 {
			return r, nil
		}
	case useUsedUp:
		if len(rest) == 1 {
			r.uses, err = replyInt("use", rest[0])
			return r, err
		}
	case useCounted:
		if len(rest)%2 == 0 && len(rest) > 0 {
			kv, err := replyStrings("use", rest)
			if err != nil {
				return useResult{}, err
			}
			r.hash = make(map[string]string, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				r.hash[kv[i]] = kv[i+1]
			}
			return r, nil
		}
	}
	return useResult{}, fmt.Errorf("%w from use: state %d with %d more elements", errUnexpectedReply, state, len(rest))
}

// Use implements the issuer's store: one script checks the credential is
// live (no revocation mark covers it either), counts the use and, past
// max_uses, writes refused to the outbox.
func (s *Store) Use(ctx context.Context, id, taskID string, refused *eventsv1.LifecycleEvent) (*issuer.Credential, error) {
	data, err := eventbus.Encode(s.opts.Source, refused)
	if err != nil {
		return nil, fmt.Errorf("redisstore: use %s: %w", id, err)
	}
	sh := s.shardOf(taskID)
	call := useCall{Cred: sh.cred(id), Outbox: sh.outbox, Marks: sh.marks,
		EventID: refused.GetId(), Subject: s.opts.Events.Subject(refused.GetType()), Payload: data}
	res, err := call.Run(ctx, s.rdb)
	if err != nil {
		return nil, storeErr("use "+id, err)
	}
	switch res.state {
	case useNotLive:
		return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrNotFound)
	case useUsedUp:
		s.notify()
		return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrUsedUp)
	}
	c, ok, err := decodeCredential(id, res.hash)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrNotFound)
	}
	return c, nil
}

// AppendEvent writes one event (e.g. denied) to the outbox of taskID's shard.
// A single XADD is atomic on its own, so no script is needed.
func (s *Store) AppendEvent(ctx context.Context, taskID string, ev *eventsv1.LifecycleEvent) error {
	data, err := eventbus.Encode(s.opts.Source, ev)
	if err != nil {
		return fmt.Errorf("redisstore: append event: %w", err)
	}
	err = s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.shardOf(taskID).outbox,
		Values: []any{redisscripts.EntryID, ev.GetId(), redisscripts.EntrySubject, s.opts.Events.Subject(ev.GetType()), redisscripts.EntryData, data},
	}).Err()
	if err != nil {
		return storeErr("append event "+ev.GetId(), err)
	}
	s.notify()
	return nil
}
