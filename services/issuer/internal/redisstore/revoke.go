package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

const (
	// revokeChunk bounds the credentials one revoke script handles, so that
	// revoking a large agent's credentials does not stall Redis in one
	// script. Each credential is still revoked atomically with its event.
	// Every call that reads meanwhile (introspection) waits for the
	// scripts ahead of it: at 64 a Get's p99 during a revocation stayed
	// around 5 ms in BenchmarkRevokeByDelegator10000 (14 to 28 ms at 256),
	// for no loss of throughput.
	revokeChunk = 64
	// maxRevokeWorkers bounds how many runs of up to revokeChunk
	// candidates a revocation works on at once (revokeWorkers).
	maxRevokeWorkers = 4
	// completeAttempts bounds how often CompleteTask, and a revocation's
	// run, read again when credentials were issued, exchanged or expired
	// while they read.
	completeAttempts = 8
)

var revokeLua = redis.NewScript(redisscripts.Revoke.Source)

// revokeTarget is one credential to revoke, as revoke.lua and complete.lua
// take it: its keys and its revoked event.
type revokeTarget struct {
	Cred      string `key:"cred"`
	Task      string `key:"task"`
	Agent     string `key:"agent"`
	Delegator string `key:"delegator"`
	Children  string `key:"children"`

	ID      string `arg:"id"`
	EventID string `arg:"event_id"`
	Subject string `arg:"subject"`
	Payload []byte `arg:"payload"`
}

func (t *revokeTarget) appendTo(keys []string, args []any) ([]string, []any) {
	return append(keys, t.Cred, t.Task, t.Agent, t.Delegator, t.Children),
		append(args, t.ID, t.EventID, t.Subject, t.Payload)
}

// revokeCall is a run of revoke.lua.
type revokeCall struct {
	Expiry  string `key:"expiry"`
	Expired string `key:"expired"`
	Outbox  string `key:"outbox"`

	// Prefix is the shard's key prefix.
	Prefix string `arg:"prefix"`

	Targets []revokeTarget `items:""`
}

// revokeResult is what revoke.lua did: nothing, on a conflict, or revoked
// the credentials listed (those still stored).
type revokeResult struct {
	conflict bool
	revoked  []string
}

func (c *revokeCall) keysArgs() ([]string, []any) {
	keys := make([]string, 0, 3+5*len(c.Targets))
	args := make([]any, 0, 1+4*len(c.Targets))
	keys = append(keys, c.Expiry, c.Expired, c.Outbox)
	args = append(args, c.Prefix)
	for i := range c.Targets {
		keys, args = c.Targets[i].appendTo(keys, args)
	}
	return keys, args
}

// Run runs the script.
func (c *revokeCall) Run(ctx context.Context, rdb redis.Scripter) (revokeResult, error) {
	keys, args := c.keysArgs()
	v, err := revokeLua.Run(ctx, rdb, keys, args...).Result()
	if err != nil {
		return revokeResult{}, err
	}
	return decodeRevoke(v)
}

func decodeRevoke(v any) (revokeResult, error) {
	state, rest, err := replyArray("revoke", v)
	if err != nil {
		return revokeResult{}, err
	}
	switch {
	case state == 0 && len(rest) == 0:
		return revokeResult{conflict: true}, nil
	case state == 1:
		ids, err := replyStrings("revoke", rest)
		return revokeResult{revoked: ids}, err
	}
	return revokeResult{}, fmt.Errorf("%w from revoke: state %d with %d more elements", errUnexpectedReply, state, len(rest))
}

// targetOf returns the keys and revoked event of c in shard sh.
func (s *Store) targetOf(sh shard, c *issuer.Credential, mkEvent issuer.EventFunc) (revokeTarget, error) {
	ev := mkEvent(c)
	if ev == nil {
		return revokeTarget{}, fmt.Errorf("redisstore: revoke %s: no event built", c.ID)
	}
	data, err := eventbus.Encode(s.opts.Source, ev)
	if err != nil {
		return revokeTarget{}, fmt.Errorf("redisstore: revoke %s: %w", c.ID, err)
	}
	return revokeTarget{
		Cred: sh.cred(c.ID), Task: sh.task(c.Task.GetId()), Agent: sh.agent(c.Agent.GetId()),
		Delegator: sh.delegator(c.Delegator.GetId()), Children: sh.children(c.ID),
		ID: c.ID, EventID: ev.GetId(), Subject: s.opts.Events.Subject(ev.GetType()), Payload: data,
	}, nil
}

// Revoke implements the issuer's store.
//
// By delegator or agent, it first writes a revocation mark in every shard
// (mark.lua, one pipelined round trip): from that step on, every
// credential of the delegator (agent) written before it is not live for
// Get, List, Use and an exchange, however long the rest takes. Then, by any
// selector, each credential is deleted with its indexes, schedule and
// expired event, and its revoked event written, in one script per run of
// up to revokeChunk credentials; a credential whose key is already gone
// when the script runs yields no event (DEL is the arbiter), so that each
// gets exactly one, whoever else revokes, completes or sweeps it.
//
// The candidates are read as stored, marks ignored: a credential a mark
// hides still needs its revoked event. (CompleteTask and every other
// revocation read them so too: whichever revokes such a credential first
// writes its one event, which also completes a revocation that was cut
// short after its marks.) The index is read shard after shard and each
// shard's part cut into runs, revokeWorkers() runs in flight: the issuer
// reads and encodes runs while Redis runs the scripts of others, and holds
// only the runs in flight, never every credential and event at once.
//
// The credentials exchanged from each one, down the chain, are revoked in
// the same script as their ancestor: the script refuses to run when a
// child was exchanged after the descendants were read, and the run is read
// again.
//
// Why marks then runs leave no credential behind, and none hidden that
// should not be:
//   - A credential written in a shard before the shard's mark is in the
//     shard's index before the mark (the issue script writes both), so the
//     index read after the mark lists it: it is revoked one by one, with
//     its event, even though the mark hid it first.
//   - A credential written after the mark is not hidden: it was issued
//     after the revocation. It is revoked too if the index read, which
//     comes later, lists it; as with any credential issued while a
//     revocation runs, either outcome is right.
//   - Marks and the "written" stamp are Redis's clock, read inside the
//     scripts of the shard (one node): an issuer replica with a skewed
//     clock neither hides what it issues after a mark nor lets what it
//     issued before escape it. IssuedAt is not compared: it is the issuer's
//     clock, truncated to the second for the token's iat, and would hide
//     credentials issued within a second after a revocation.
//   - An exchange checks its parent when it reads the subject token and
//     again in the issue script, atomically with writing the child. A mark
//     written between the two makes the script refuse (ErrNotFound). A
//     child written before the mark is one of the parent's children: the
//     delegator's mark covers it too (same delegator); an agent's mark does
//     not (another agent), but the parent's run reads it as a descendant
//     and revokes it in the parent's script.
//
// With sel.Owner set (a platform revoking its own), no mark is written: a
// mark would hide every owner's credentials of the agent or delegator.
// Only the owner's credentials are revoked, with their descendants (of
// the same task, hence the same owner); they become inactive one run at a
// time.
func (s *Store) Revoke(ctx context.Context, sel issuer.Selector, mkEvent issuer.EventFunc) ([]string, error) {
	var shards []int
	switch {
	case sel.Owner != "" && (sel.Kind == issuer.ByAgent || sel.Kind == issuer.ByDelegator):
		shards = make([]int, len(s.shards))
		for i := range shards {
			shards[i] = i
		}
	case sel.Kind == issuer.ByAgent || sel.Kind == issuer.ByDelegator:
		var err error
		if shards, err = s.mark(ctx, sel); err != nil {
			return nil, err
		}
	}
	revoked, err := s.revokeRuns(ctx, sel, shards, mkEvent)
	if len(revoked) > 0 {
		s.notify()
	}
	return revoked, err
}

// indexKey returns the key of sel's index in a shard: an agent's or a
// delegator's part, or the task's.
func indexKey(sh shard, sel issuer.Selector) string {
	switch sel.Kind {
	case issuer.ByAgent:
		return sh.agent(sel.ID)
	case issuer.ByDelegator:
		return sh.delegator(sel.ID)
	default:
		return sh.task(sel.ID)
	}
}

// revokeWorkers is how many runs a revocation works on at once: two, so
// that the issuer encodes one run while Redis runs the other's script, and
// up to maxRevokeWorkers where there are cores to encode several (Redis
// runs one script at a time; more would only queue there). More workers
// than cores would take the CPU from the calls served meanwhile, such as
// the introspections that must see the credentials inactive.
func revokeWorkers() int {
	return max(2, min(maxRevokeWorkers, runtime.GOMAXPROCS(0)))
}

// revokeRun is a run of candidates of one shard, revoked together (with
// their descendants) by one worker.
type revokeRun struct {
	shard int
	ids   []string
	// owner, when set, is the only owner whose credentials are revoked.
	owner string
}

// revokeRuns revokes the candidates sel names, run by run, revokeWorkers()
// runs at once. For an agent or a delegator, shards are those whose index
// listed candidates when the marks were written (a shard whose index was
// empty then holds none written before the revocation).
func (s *Store) revokeRuns(ctx context.Context, sel issuer.Selector, shards []int, mkEvent issuer.EventFunc) ([]string, error) {
	g, gctx := errgroup.WithContext(ctx)
	runs := make(chan revokeRun)
	var (
		mu      sync.Mutex
		revoked []string
	)
	for range revokeWorkers() {
		g.Go(func() error {
			for r := range runs {
				// After a failure, no new run starts, but the runs in
				// flight finish (ctx, not gctx): the ids returned are
				// then exactly those revoked.
				if gctx.Err() != nil {
					return nil
				}
				ids, err := s.revokeRun(ctx, r, mkEvent)
				mu.Lock()
				revoked = append(revoked, ids...)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(runs)
		return s.candidateRuns(gctx, sel, shards, func(r revokeRun) error {
			select {
			case runs <- r:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	err := g.Wait()
	return revoked, err
}

// candidateRuns hands sel's candidates to send in runs of up to revokeChunk
// ids of one shard, reading one shard's part of the index at a time.
func (s *Store) candidateRuns(ctx context.Context, sel issuer.Selector, shards []int, send func(revokeRun) error) error {
	switch sel.Kind {
	case issuer.ByCredential:
		// Its shard is unknown: ask every shard at once.
		cmds := make([]*redis.IntCmd, len(s.shards))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, sh := range s.shards {
				cmds[i] = p.Exists(ctx, sh.cred(sel.ID))
			}
			return nil
		})
		if err != nil {
			return storeErr("read credential", err)
		}
		for i, cmd := range cmds {
			if cmd.Val() == 1 {
				if err := send(revokeRun{i, []string{sel.ID}, sel.Owner}); err != nil {
					return err
				}
			}
		}
		return nil
	case issuer.ByTask:
		shards = []int{s.ShardOf(sel.ID)}
	case issuer.ByAgent, issuer.ByDelegator:
	default:
		return fmt.Errorf("redisstore: selector kind %d has no index", sel.Kind)
	}
	for _, i := range shards {
		ids, err := s.rdb.SMembers(ctx, indexKey(s.shards[i], sel)).Result()
		if err != nil {
			return storeErr("read index", err)
		}
		for len(ids) > 0 {
			n := min(len(ids), revokeChunk)
			if err := send(revokeRun{i, ids[:n:n], sel.Owner}); err != nil {
				return err
			}
			ids = ids[n:]
		}
	}
	return nil
}

// revokeRun revokes the credentials of one run that are still stored, with
// their live descendants. When a script finds a child it was not given
// (exchanged since the descendants were read), the run is read again: the
// credentials already revoked are gone from it.
func (s *Store) revokeRun(ctx context.Context, r revokeRun, mkEvent issuer.EventFunc) ([]string, error) {
	refs := make([]ref, len(r.ids))
	for i, id := range r.ids {
		refs[i] = ref{r.shard, id}
	}
	var revoked []string
	for range completeAttempts {
		creds, err := s.readStored(ctx, refs)
		if err != nil {
			return revoked, err
		}
		roots := slices.DeleteFunc(creds, func(c *issuer.Credential) bool {
			return c == nil || (r.owner != "" && c.Owner != r.owner)
		})
		ids, conflict, err := s.revokeTrees(ctx, r.shard, roots, mkEvent)
		revoked = append(revoked, ids...)
		if err != nil || !conflict {
			return revoked, err
		}
	}
	return revoked, fmt.Errorf("redisstore: revoke: credentials kept being exchanged during %d attempts: %w",
		completeAttempts, issuer.ErrStoreUnavailable)
}

// revokeTrees revokes roots, credentials of one shard, with their live
// descendants. conflict reports that a script found a child it was not
// given.
func (s *Store) revokeTrees(ctx context.Context, shardIdx int, roots []*issuer.Credential, mkEvent issuer.EventFunc) (revoked []string, conflict bool, err error) {
	if len(roots) == 0 {
		return nil, false, nil
	}
	trees, err := s.withDescendants(ctx, shardIdx, roots)
	if err != nil {
		return nil, false, err
	}
	sh := s.shards[shardIdx]
	// One script per run of whole trees, up to revokeChunk credentials (a
	// larger tree goes alone): a parent is never revoked without its
	// descendants.
	for start := 0; start < len(trees); {
		end, n := start, 0
		for end < len(trees) && (n == 0 || n+len(trees[end]) <= revokeChunk) {
			n += len(trees[end])
			end++
		}
		call := revokeCall{Expiry: sh.expiry, Expired: sh.expired, Outbox: sh.outbox, Prefix: sh.prefix,
			Targets: make([]revokeTarget, 0, n)}
		for _, tree := range trees[start:end] {
			for _, c := range tree {
				t, err := s.targetOf(sh, c, mkEvent)
				if err != nil {
					return revoked, false, err
				}
				call.Targets = append(call.Targets, t)
			}
		}
		res, err := call.Run(ctx, s.rdb)
		if err != nil {
			return revoked, false, storeErr("revoke", err)
		}
		if res.conflict {
			return revoked, true, nil
		}
		delegators := map[string]string{}
		for _, tree := range trees[start:end] {
			for _, c := range tree {
				delegators[c.ID] = c.Delegator.GetId()
			}
		}
		s.releaseQuota(ctx, revokedOf(res.revoked, delegators))
		revoked = append(revoked, res.revoked...)
		start = end
	}
	return revoked, false, nil
}

// withDescendants returns the live credentials of one shard exchanged from
// roots, down the chain, as trees: each root followed by its descendants.
// A root that is itself a descendant of another root joins that tree.
func (s *Store) withDescendants(ctx context.Context, shardIdx int, roots []*issuer.Credential) ([][]*issuer.Credential, error) {
	sh := s.shards[shardIdx]
	seen := make(map[string]bool, len(roots))
	for _, c := range roots {
		seen[c.ID] = true
	}
	parentOf := map[string]string{}
	all := slices.Clone(roots)
	frontier := roots
	for len(frontier) > 0 {
		cmds := make([]*redis.StringSliceCmd, len(frontier))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range frontier {
				cmds[i] = p.SMembers(ctx, sh.children(c.ID))
			}
			return nil
		})
		if err != nil {
			return nil, storeErr("read children", err)
		}
		var next []ref
		for i, cmd := range cmds {
			for _, id := range cmd.Val() {
				parentOf[id] = frontier[i].ID
				if !seen[id] {
					seen[id] = true
					next = append(next, ref{shardIdx, id})
				}
			}
		}
		kids, err := s.readStored(ctx, next)
		if err != nil {
			return nil, err
		}
		frontier = frontier[:0:0]
		for _, c := range kids {
			if c != nil {
				frontier = append(frontier, c)
				all = append(all, c)
			}
		}
	}
	// Group by root: follow parent links up to a credential with no
	// parent among those found.
	rootOf := func(id string) string {
		for {
			p, ok := parentOf[id]
			if !ok || !seen[p] {
				return id
			}
			id = p
		}
	}
	index := map[string]int{}
	var trees [][]*issuer.Credential
	for _, c := range all {
		r := rootOf(c.ID)
		i, ok := index[r]
		if !ok {
			i = len(trees)
			index[r] = i
			trees = append(trees, nil)
		}
		trees[i] = append(trees[i], c)
	}
	return trees, nil
}
