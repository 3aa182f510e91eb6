package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/jitid/jitid/pkg/eventbus"
	eventsv1 "github.com/jitid/jitid/proto/jitid/events/v1"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

// ErrIDInUse means Issue was given the id of a credential that is live.
var ErrIDInUse = errors.New("redisstore: credential id already in use")

const (
	// revokeChunk bounds the credentials one revoke script handles, so that
	// revoking a large agent's credentials does not stall Redis in one
	// script. Each credential is still revoked atomically with its event.
	revokeChunk = 256
	// completeAttempts bounds how often CompleteTask reads again when
	// credentials of the task were issued or expired while it read.
	completeAttempts = 8
	defaultPageSize  = 100
	maxPageSize      = 1000
)

// Issue implements the issuer's store: one script writes the credential
// (its key expiring at ExpiresAt), its indexes, its expiry schedule, the
// issued event into the outbox and the expired event kept for the sweeper.
// expired must be of type EVENT_TYPE_CREDENTIAL_EXPIRED; it is kept as
// protobuf and encoded by the relay only if the credential expires.
func (s *Store) Issue(ctx context.Context, c *issuer.Credential, issued, expired *eventsv1.LifecycleEvent) error {
	if c == nil || c.ID == "" {
		return errors.New("redisstore: issue: credential without id")
	}
	issuedData, err := eventbus.Encode(s.opts.Source, issued)
	if err != nil {
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, err)
	}
	// The expired event is kept as protobuf binary: most credentials
	// expire, but its envelope is only needed then, and the relay builds it.
	if err := checkExpired(expired); err != nil {
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, err)
	}
	expiredPB, err := proto.Marshal(expired)
	if err != nil {
		return fmt.Errorf("redisstore: issue %s: expired event: %w", c.ID, err)
	}
	taskID, agentID, delegatorID := c.Task.GetId(), c.Agent.GetId(), c.Delegator.GetId()
	sh := s.shardOf(taskID)
	record := expiredRecord(expired.GetId(), expiredPB, taskID, agentID, delegatorID)
	keys := []string{sh.cred(c.ID), sh.task(taskID), sh.agent(agentID), sh.delegator(delegatorID),
		sh.expiry, sh.expired, sh.done(taskID), sh.outbox}
	if c.ParentID != "" {
		keys = append(keys, sh.cred(c.ParentID), sh.children(c.ParentID))
	}
	args := make([]any, 0, 6+22)
	args = append(args, c.ID, c.ExpiresAt.UnixMilli(), issued.GetId(), s.opts.Events.Subject(issued.GetType()), issuedData, record)
	if args, err = credentialArgs(args, c); err != nil {
		return err
	}
	res, err := issueScript.Run(ctx, s.rdb, keys, args...).Int64()
	if err != nil {
		return storeErr("issue "+c.ID, err)
	}
	switch res {
	case 0:
		return fmt.Errorf("redisstore: issue %s for task %s: %w", c.ID, taskID, issuer.ErrTaskCompleted)
	case -1:
		return fmt.Errorf("redisstore: issue %s: %w", c.ID, ErrIDInUse)
	case -2:
		return fmt.Errorf("redisstore: exchange %s: parent %s: %w", c.ID, c.ParentID, issuer.ErrNotFound)
	}
	s.notify()
	return nil
}

// Use implements the issuer's store: one script checks the credential is
// live, counts the use and, past max_uses, writes refused to the outbox.
func (s *Store) Use(ctx context.Context, id, taskID string, refused *eventsv1.LifecycleEvent) (*issuer.Credential, error) {
	data, err := eventbus.Encode(s.opts.Source, refused)
	if err != nil {
		return nil, fmt.Errorf("redisstore: use %s: %w", id, err)
	}
	sh := s.shardOf(taskID)
	res, err := useScript.Run(ctx, s.rdb, []string{sh.cred(id), sh.outbox},
		refused.GetId(), s.opts.Events.Subject(refused.GetType()), data).Slice()
	if err != nil {
		return nil, storeErr("use "+id, err)
	}
	state, _ := res[0].(int64)
	switch state {
	case 0:
		return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrNotFound)
	case 2:
		s.notify()
		return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrUsedUp)
	}
	h := make(map[string]string, (len(res)-1)/2)
	for i := 1; i+1 < len(res); i += 2 {
		k, _ := res[i].(string)
		v, _ := res[i+1].(string)
		h[k] = v
	}
	c, ok, err := decodeCredential(id, h)
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
		Values: []any{"id", ev.GetId(), "subject", s.opts.Events.Subject(ev.GetType()), "data", data},
	}).Err()
	if err != nil {
		return storeErr("append event "+ev.GetId(), err)
	}
	s.notify()
	return nil
}

// Get implements the issuer's store. With an empty taskID it looks in
// every shard, in one pipelined round trip.
func (s *Store) Get(ctx context.Context, id, taskID string) (*issuer.Credential, error) {
	var refs []ref
	if taskID != "" {
		refs = []ref{{s.ShardOf(taskID), id}}
	} else {
		refs = s.everyShard(id)
	}
	creds, err := s.read(ctx, refs)
	if err != nil {
		return nil, err
	}
	for _, c := range creds {
		if c != nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("redisstore: credential %s: %w", id, issuer.ErrNotFound)
}

// ref names a credential in a shard.
type ref struct {
	shard int
	id    string
}

func (s *Store) everyShard(id string) []ref {
	refs := make([]ref, len(s.shards))
	for i := range refs {
		refs[i] = ref{i, id}
	}
	return refs
}

// read fetches credentials in one pipelined round trip; the result holds
// nil where a credential is no longer live.
func (s *Store) read(ctx context.Context, refs []ref) ([]*issuer.Credential, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(refs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range refs {
			cmds[i] = p.HGetAll(ctx, s.shards[r.shard].cred(r.id))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("read credentials", err)
	}
	out := make([]*issuer.Credential, len(refs))
	for i, cmd := range cmds {
		c, ok, err := decodeCredential(refs[i].id, cmd.Val())
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = c
		}
	}
	return out, nil
}

// members returns the members of an index, per shard, sorted: the task's
// in its one shard, an agent's or delegator's in every shard.
func (s *Store) members(ctx context.Context, sel issuer.Selector) ([][]string, error) {
	var key func(shard) string
	switch sel.Kind {
	case issuer.ByTask:
		i := s.ShardOf(sel.ID)
		ids, err := s.rdb.SMembers(ctx, s.shards[i].task(sel.ID)).Result()
		if err != nil {
			return nil, storeErr("read task index", err)
		}
		slices.Sort(ids)
		out := make([][]string, len(s.shards))
		out[i] = ids
		return out, nil
	case issuer.ByAgent:
		key = func(sh shard) string { return sh.agent(sel.ID) }
	case issuer.ByDelegator:
		key = func(sh shard) string { return sh.delegator(sel.ID) }
	default:
		return nil, fmt.Errorf("redisstore: selector kind %d has no index", sel.Kind)
	}
	cmds := make([]*redis.StringSliceCmd, len(s.shards))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range s.shards {
			cmds[i] = p.SMembers(ctx, key(sh))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("read index", err)
	}
	out := make([][]string, len(s.shards))
	for i, cmd := range cmds {
		out[i] = cmd.Val()
		slices.Sort(out[i])
	}
	return out, nil
}

// List implements the issuer's store. Credentials come in shard order, then
// id order; the page token is the position after the last one returned, so
// credentials revoked or expired between pages do not shift the listing.
// A page may be shorter than pageSize (credentials that died between the
// index read and the fetch are skipped).
func (s *Store) List(ctx context.Context, sel issuer.Selector, pageSize int, pageToken string) (issuer.Page, error) {
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	startShard, after, err := s.parsePageToken(sel, pageToken)
	if err != nil {
		return issuer.Page{}, err
	}
	if sel.Kind == issuer.ByCredential {
		return issuer.Page{}, fmt.Errorf("redisstore: list by credential: use Get")
	}
	all, err := s.members(ctx, sel)
	if err != nil {
		return issuer.Page{}, err
	}
	// Candidates in listing order after the token's position.
	var refs []ref
	for i := startShard; i < len(all); i++ {
		ids := all[i]
		if i == startShard && after != "" {
			n, _ := slices.BinarySearch(ids, after)
			for n < len(ids) && ids[n] <= after {
				n++
			}
			ids = ids[n:]
		}
		for _, id := range ids {
			refs = append(refs, ref{i, id})
		}
	}
	var page issuer.Page
	for len(refs) > 0 && len(page.Credentials) < pageSize {
		n := min(len(refs), pageSize-len(page.Credentials))
		creds, err := s.read(ctx, refs[:n])
		if err != nil {
			return issuer.Page{}, err
		}
		for i, c := range creds {
			if c != nil {
				page.Credentials = append(page.Credentials, c)
			}
			if len(page.Credentials) == pageSize {
				n = i + 1
				break
			}
		}
		last := refs[n-1]
		refs = refs[n:]
		if len(page.Credentials) == pageSize && len(refs) > 0 {
			page.NextToken = s.pageToken(sel, last)
		}
	}
	return page, nil
}

func selectorSum(sel issuer.Selector) uint32 {
	return crc32.ChecksumIEEE([]byte(strconv.Itoa(int(sel.Kind)) + "\x00" + sel.ID))
}

// pageToken is base64url("v1 <selector checksum> <shard> <last id>"): the
// checksum makes a token handed out for one listing invalid for another.
func (s *Store) pageToken(sel issuer.Selector, last ref) string {
	raw := "v1 " + strconv.FormatUint(uint64(selectorSum(sel)), 16) + " " + strconv.Itoa(last.shard) + " " + last.id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func (s *Store) parsePageToken(sel issuer.Selector, token string) (shardIdx int, after string, err error) {
	if token == "" {
		return 0, "", nil
	}
	bad := fmt.Errorf("redisstore: list: %w", issuer.ErrBadPageToken)
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", bad
	}
	parts := strings.SplitN(string(raw), " ", 4)
	if len(parts) != 4 || parts[0] != "v1" || parts[3] == "" {
		return 0, "", bad
	}
	sum, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || uint32(sum) != selectorSum(sel) {
		return 0, "", bad
	}
	shardIdx, err = strconv.Atoi(parts[2])
	if err != nil || shardIdx < 0 || shardIdx >= len(s.shards) {
		return 0, "", bad
	}
	return shardIdx, parts[3], nil
}

// candidates returns the live credentials a selector names, with the shard
// each was found in.
func (s *Store) candidates(ctx context.Context, sel issuer.Selector) ([]ref, []*issuer.Credential, error) {
	var refs []ref
	if sel.Kind == issuer.ByCredential {
		refs = s.everyShard(sel.ID)
	} else {
		all, err := s.members(ctx, sel)
		if err != nil {
			return nil, nil, err
		}
		for i, ids := range all {
			for _, id := range ids {
				refs = append(refs, ref{i, id})
			}
		}
	}
	creds, err := s.read(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	var liveRefs []ref
	var live []*issuer.Credential
	for i, c := range creds {
		if c != nil {
			liveRefs = append(liveRefs, refs[i])
			live = append(live, c)
		}
	}
	return liveRefs, live, nil
}

// revokeArgs appends the keys and arguments of one credential for the
// revoke part of the scripts.
func (s *Store) revokeArgs(keys []string, args []any, sh shard, c *issuer.Credential, mkEvent issuer.EventFunc) ([]string, []any, error) {
	ev := mkEvent(c)
	if ev == nil {
		return nil, nil, fmt.Errorf("redisstore: revoke %s: no event built", c.ID)
	}
	data, err := eventbus.Encode(s.opts.Source, ev)
	if err != nil {
		return nil, nil, fmt.Errorf("redisstore: revoke %s: %w", c.ID, err)
	}
	keys = append(keys, sh.cred(c.ID), sh.task(c.Task.GetId()), sh.agent(c.Agent.GetId()), sh.delegator(c.Delegator.GetId()), sh.children(c.ID))
	args = append(args, c.ID, ev.GetId(), s.opts.Events.Subject(ev.GetType()), data)
	return keys, args, nil
}

// Revoke implements the issuer's store. Each credential is deleted with its
// indexes, schedule and expired event, and its revoked event written, in one
// script per shard (per revokeChunk credentials); a credential whose key is
// already gone when the script runs yields no event. The credentials
// exchanged from each one, down the chain, are revoked in the same script
// as their ancestor: the script refuses to run when a child was exchanged
// after the descendants were read, and the store reads again.
func (s *Store) Revoke(ctx context.Context, sel issuer.Selector, mkEvent issuer.EventFunc) ([]string, error) {
	var revoked []string
	for range completeAttempts {
		refs, creds, err := s.candidates(ctx, sel)
		if err != nil {
			return revoked, err
		}
		if sel.Kind == issuer.ByCredential && len(revoked) > 0 {
			// The credential itself went in an earlier attempt.
			refs, creds = nil, nil
		}
		ids, conflict, err := s.revokeTrees(ctx, refs, creds, mkEvent)
		revoked = append(revoked, ids...)
		if err != nil {
			return revoked, err
		}
		if !conflict {
			if len(revoked) > 0 {
				s.notify()
			}
			return revoked, nil
		}
	}
	if len(revoked) > 0 {
		s.notify()
	}
	return revoked, fmt.Errorf("redisstore: revoke: credentials kept being exchanged during %d attempts: %w",
		completeAttempts, issuer.ErrStoreUnavailable)
}

// revokeTrees revokes the candidates with their live descendants, shard by
// shard. conflict reports that a script found a child it was not given.
func (s *Store) revokeTrees(ctx context.Context, refs []ref, creds []*issuer.Credential, mkEvent issuer.EventFunc) (revoked []string, conflict bool, err error) {
	byShard := map[int][]*issuer.Credential{}
	var order []int
	for i, r := range refs {
		if _, ok := byShard[r.shard]; !ok {
			order = append(order, r.shard)
		}
		byShard[r.shard] = append(byShard[r.shard], creds[i])
	}
	for _, shardIdx := range order {
		trees, err := s.withDescendants(ctx, shardIdx, byShard[shardIdx])
		if err != nil {
			return revoked, false, err
		}
		sh := s.shards[shardIdx]
		// One script per run of whole trees, up to revokeChunk credentials
		// (a larger tree goes alone): a parent is never revoked without its
		// descendants.
		for start := 0; start < len(trees); {
			end, n := start, 0
			for end < len(trees) && (n == 0 || n+len(trees[end]) <= revokeChunk) {
				n += len(trees[end])
				end++
			}
			keys := make([]string, 0, 3+5*n)
			keys = append(keys, sh.expiry, sh.expired, sh.outbox)
			args := make([]any, 0, 1+4*n)
			args = append(args, sh.prefix)
			for _, tree := range trees[start:end] {
				for _, c := range tree {
					if keys, args, err = s.revokeArgs(keys, args, sh, c, mkEvent); err != nil {
						return revoked, false, err
					}
				}
			}
			res, err := revokeScript.Run(ctx, s.rdb, keys, args...).Slice()
			if err != nil {
				return revoked, false, storeErr("revoke", err)
			}
			if state, _ := res[0].(int64); state == 0 {
				return revoked, true, nil
			}
			for _, v := range res[1:] {
				revoked = append(revoked, v.(string))
			}
			start = end
		}
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
		kids, err := s.read(ctx, next)
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

// CompleteTask implements the issuer's store. The completed event lists in
// CredentialIds exactly the credentials revoked: the script refuses to run
// on a stale read (a credential issued or expired meanwhile) and the store
// reads again. completed itself is not modified; a copy carries the ids.
// Completing a task that is already completed revokes whatever is live
// (nothing, normally) and writes no second completed event: it is not a
// new state change.
func (s *Store) CompleteTask(ctx context.Context, taskID string, mkEvent issuer.EventFunc, completed *eventsv1.LifecycleEvent) ([]string, error) {
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
		creds, err := s.read(ctx, refs)
		if err != nil {
			return nil, err
		}
		done := proto.CloneOf(completed)
		done.CredentialIds = nil
		keys := []string{sh.expiry, sh.expired, sh.outbox, sh.done(taskID), sh.task(taskID)}
		var cand []any
		for _, c := range creds {
			if c == nil {
				continue
			}
			done.CredentialIds = append(done.CredentialIds, c.ID)
			if keys, cand, err = s.revokeArgs(keys, cand, sh, c, mkEvent); err != nil {
				return nil, err
			}
		}
		data, err := eventbus.Encode(s.opts.Source, done)
		if err != nil {
			return nil, fmt.Errorf("redisstore: complete task %s: %w", taskID, err)
		}
		args := make([]any, 0, 6+len(cand)+len(members))
		args = append(args, len(cand)/4, len(members), s.opts.DoneTTL.Milliseconds(),
			done.GetId(), s.opts.Events.Subject(done.GetType()), data)
		args = append(args, cand...)
		for _, m := range members {
			args = append(args, m)
		}
		res, err := completeScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return nil, storeErr("complete task", err)
		}
		if state, _ := res[0].(int64); state == 0 {
			continue
		}
		ids := make([]string, 0, len(res)-1)
		for _, v := range res[1:] {
			ids = append(ids, v.(string))
		}
		s.notify()
		return ids, nil
	}
	return nil, fmt.Errorf("redisstore: complete task %s: credentials kept changing during %d attempts: %w",
		taskID, completeAttempts, issuer.ErrStoreUnavailable)
}
