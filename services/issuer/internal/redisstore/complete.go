package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

var completeLua = redis.NewScript(redisscripts.Complete.Source)

// completeCall is a run of complete.lua.
type completeCall struct {
	Expiry  string `key:"expiry"`
	Expired string `key:"expired"`
	Outbox  string `key:"outbox"`
	Done    string `key:"done"`
	Task    string `key:"task"`
	Owner   string `key:"owner"`

	DoneTTLMS int64  `arg:"done_ttl_ms"`
	EventID   string `arg:"event_id"`
	Subject   string `arg:"subject"`
	Payload   []byte `arg:"payload"`
	Caller    string `arg:"caller"`
	// Admin is "1" for an admin caller, "0" otherwise.
	Admin string `arg:"admin"`

	// Targets are the candidates: the credentials the task index listed
	// that are still stored.
	Targets []revokeTarget `items:""`
	// Members are the task index's members as read.
	Members []string `arg:"members..."`
}

// completeResult is what complete.lua did: nothing, on a conflict, or
// revoked the credentials listed, and marked the task completed unless it
// already was.
type completeResult struct {
	conflict    bool
	noOwner     bool
	notOwner    bool
	alreadyDone bool
	revoked     []string
}

func (c *completeCall) keysArgs() ([]string, []any) {
	keys := make([]string, 0, 6+5*len(c.Targets))
	args := make([]any, 0, 6+4*len(c.Targets)+len(c.Members))
	keys = append(keys, c.Expiry, c.Expired, c.Outbox, c.Done, c.Task, c.Owner)
	args = append(args, c.DoneTTLMS, c.EventID, c.Subject, c.Payload, c.Caller, c.Admin)
	for i := range c.Targets {
		keys, args = c.Targets[i].appendTo(keys, args)
	}
	for _, m := range c.Members {
		args = append(args, m)
	}
	return keys, args
}

// Run runs the script.
func (c *completeCall) Run(ctx context.Context, rdb redis.Scripter) (completeResult, error) {
	keys, args := c.keysArgs()
	v, err := completeLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return completeResult{}, err
	}
	return decodeComplete(v)
}

func decodeComplete(v any) (completeResult, error) {
	state, rest, err := replyArray("complete", v)
	if err != nil {
		return completeResult{}, err
	}
	switch {
	case state == 0 && len(rest) == 0:
		return completeResult{conflict: true}, nil
	case state == -1 && len(rest) == 0:
		return completeResult{noOwner: true}, nil
	case state == -2 && len(rest) == 0:
		return completeResult{notOwner: true}, nil
	case state == 1 || state == 2:
		ids, err := replyStrings("complete", rest)
		return completeResult{alreadyDone: state == 2, revoked: ids}, err
	}
	return completeResult{}, fmt.Errorf("%w from complete: state %d with %d more elements", errUnexpectedReply, state, len(rest))
}

// CompleteTask implements the issuer's store. The completed event lists in
// CredentialIds exactly the credentials revoked: the script refuses to run
// on a stale read (a credential issued or expired meanwhile) and the store
// reads again. completed itself is not modified; a copy carries the ids.
// Completing a task that is already completed revokes whatever is live
// (nothing, normally) and writes no second completed event: it is not a
// new state change. The script checks the task's owner before anything
// else: a task without one is issuer.ErrTaskNotFound, one of another
// platform than caller (admin false) issuer.ErrCallerNotAllowed.
func (s *Store) CompleteTask(ctx context.Context, taskID, caller string, admin bool, mkEvent issuer.EventFunc, completed *eventsv1.LifecycleEvent) ([]string, error) {
	adminArg := "0"
	if admin {
		adminArg = "1"
	}
	shardIdx := s.ShardOf(taskID)
	sh := s.shards[shardIdx]
	for range completeAttempts {
		members, err := s.rdb.SMembers(ctx, sh.task(taskID)).Result()
		if err != nil {
			return nil, storeErr("complete task", err)
		}
		refs := make([]ref, len(members))
		for i, id := range members {
			refs[i] = ref{shardIdx, id}
		}
		creds, err := s.readStored(ctx, refs)
		if err != nil {
			return nil, err
		}
		done := proto.CloneOf(completed)
		done.CredentialIds = nil
		call := completeCall{Expiry: sh.expiry, Expired: sh.expired, Outbox: sh.outbox, Done: sh.done(taskID), Task: sh.task(taskID),
			Owner: sh.owner(taskID), DoneTTLMS: s.opts.DoneTTL.Milliseconds(), Caller: caller, Admin: adminArg, Members: members}
		delegators := map[string]string{}
		for _, c := range creds {
			if c == nil {
				continue
			}
			delegators[c.ID] = c.Delegator.GetId()
			done.CredentialIds = append(done.CredentialIds, c.ID)
			t, err := s.targetOf(sh, c, mkEvent)
			if err != nil {
				return nil, err
			}
			call.Targets = append(call.Targets, t)
		}
		data, err := eventbus.Encode(s.opts.Source, done)
		if err != nil {
			return nil, fmt.Errorf("redisstore: complete task %s: %w", taskID, err)
		}
		call.EventID, call.Subject, call.Payload = done.GetId(), s.opts.Events.Subject(done.GetType()), data
		res, err := call.Run(ctx, s.rdb)
		if err != nil {
			return nil, storeErr("complete task", err)
		}
		switch {
		case res.conflict:
			continue
		case res.noOwner:
			return nil, fmt.Errorf("redisstore: complete task %s: %w", taskID, issuer.ErrTaskNotFound)
		case res.notOwner:
			return nil, fmt.Errorf("redisstore: complete task %s: %w", taskID, issuer.ErrCallerNotAllowed)
		}
		s.releaseQuota(ctx, revokedOf(res.revoked, delegators))
		s.notify()
		return res.revoked, nil
	}
	return nil, fmt.Errorf("redisstore: complete task %s: credentials kept changing during %d attempts: %w",
		taskID, completeAttempts, issuer.ErrStoreUnavailable)
}

// TaskOwner implements the issuer's store: the platform of the task's
// first issuance, as issue.lua recorded it; empty when none.
func (s *Store) TaskOwner(ctx context.Context, taskID string) (string, error) {
	owner, err := s.rdb.Get(ctx, s.shardOf(taskID).owner(taskID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", storeErr("read task owner", err)
	}
	return owner, nil
}

// revokedOf returns the delegators (id → delegator id) of the ids revoked.
func revokedOf(revoked []string, delegators map[string]string) map[string]string {
	out := make(map[string]string, len(revoked))
	for _, id := range revoked {
		if d, ok := delegators[id]; ok {
			out[id] = d
		}
	}
	return out
}
