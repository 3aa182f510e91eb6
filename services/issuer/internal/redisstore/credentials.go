package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
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
	// Every call that reads meanwhile (introspection) waits for the
	// scripts ahead of it: at 64 a Get's p99 during a revocation stayed
	// around 5 ms in BenchmarkRevokeByDelegator10000 (14 to 28 ms at 256),
	// for no loss of throughput.
	revokeChunk = 64
	// maxRevokeWorkers bounds how many runs of up to revokeChunk
	// candidates a revocation works on at once (revokeWorkers).
	maxRevokeWorkers = 4
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
		keys = append(keys, sh.cred(c.ParentID), sh.children(c.ParentID), sh.marks)
	}
	args := make([]any, 0, 6+26)
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
// live (no revocation mark covers it either), counts the use and, past
// max_uses, writes refused to the outbox.
func (s *Store) Use(ctx context.Context, id, taskID string, refused *eventsv1.LifecycleEvent) (*issuer.Credential, error) {
	data, err := eventbus.Encode(s.opts.Source, refused)
	if err != nil {
		return nil, fmt.Errorf("redisstore: use %s: %w", id, err)
	}
	sh := s.shardOf(taskID)
	res, err := useScript.Run(ctx, s.rdb, []string{sh.cred(id), sh.outbox, sh.marks},
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
	c, ok, err := decodeCredential(id, hashOf(res[1:]))
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

// Get implements the issuer's store: a credential a revocation mark covers
// is not live. With an empty taskID it looks in every shard, in one
// pipelined round trip.
func (s *Store) Get(ctx context.Context, id, taskID string) (*issuer.Credential, error) {
	var refs []ref
	if taskID != "" {
		refs = []ref{{s.ShardOf(taskID), id}}
	} else {
		refs = s.everyShard(id)
	}
	creds, err := s.readLive(ctx, refs)
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

// readStored fetches credentials as stored, in one pipelined round trip,
// revocation marks ignored: for revocations, which must find the
// credentials a mark hides. The result holds nil where a key is gone.
func (s *Store) readStored(ctx context.Context, refs []ref) ([]*issuer.Credential, error) {
	return s.read(ctx, refs, false)
}

// readLive fetches the credentials that are live: the result holds nil
// where a key is gone or a revocation mark covers it.
func (s *Store) readLive(ctx context.Context, refs []ref) ([]*issuer.Credential, error) {
	return s.read(ctx, refs, true)
}

// read fetches credentials in one pipelined round trip of HGETALLs. With
// live, the same round trip asks whether their shards hold any mark; only
// credentials in a shard with marks, which exist for a while after a revoke
// by delegator or agent, cost a second one (ZMSCORE of their delegator's
// and agent's marks). Plain commands, not a script, keep the common read as
// cheap for Redis as an HGETALL. A mark written between the two round trips
// is seen by the second, and one written after the read is a revocation
// after it: the read is consistent either way.
func (s *Store) read(ctx context.Context, refs []ref, live bool) ([]*issuer.Credential, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	hashes := make([]*redis.MapStringStringCmd, len(refs))
	marked := map[int]*redis.IntCmd{}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range refs {
			hashes[i] = p.HGetAll(ctx, s.shards[r.shard].cred(r.id))
			if _, ok := marked[r.shard]; live && !ok {
				marked[r.shard] = p.Exists(ctx, s.shards[r.shard].marks)
			}
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("read credentials", err)
	}
	// The stored credentials whose shard holds marks, and their marks.
	var check []int
	for i, r := range refs {
		h := hashes[i].Val()
		if live && len(h) > 0 && h[fWritten] != "" && marked[r.shard].Val() > 0 {
			check = append(check, i)
		}
	}
	scores := make(map[int]*redis.FloatSliceCmd, len(check))
	if len(check) > 0 {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range check {
				h := hashes[i].Val()
				scores[i] = p.ZMScore(ctx, s.shards[refs[i].shard].marks,
					markMember(issuer.Selector{Kind: issuer.ByDelegator, ID: h[fDelegatorID]}),
					markMember(issuer.Selector{Kind: issuer.ByAgent, ID: h[fAgentID]}))
			}
			return nil
		})
		if err != nil {
			return nil, storeErr("read revocation marks", err)
		}
	}
	out := make([]*issuer.Credential, len(refs))
	for i, cmd := range hashes {
		h := cmd.Val()
		if sc, ok := scores[i]; ok && coveredByMark(h[fWritten], sc.Val()) {
			continue
		}
		c, ok, err := decodeCredential(refs[i].id, h)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = c
		}
	}
	return out, nil
}

// coveredByMark reports whether a credential written at written (µs of
// Redis's clock, as the issue script stamps it) is covered by one of the
// marks' scores (µs, 0 where there is no mark), as markedRevoked decides in
// the scripts. The scores are below 2^53, so exact as float64.
func coveredByMark(written string, marks []float64) bool {
	w, err := strconv.ParseInt(written, 10, 64)
	if err != nil {
		return false
	}
	for _, m := range marks {
		if m > 0 && float64(w) <= m {
			return true
		}
	}
	return false
}

// hashOf makes a map of a script's field, value, ... reply.
func hashOf(res []any) map[string]string {
	h := make(map[string]string, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		k, _ := res[i].(string)
		v, _ := res[i+1].(string)
		h[k] = v
	}
	return h
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
		creds, err := s.readLive(ctx, refs[:n])
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

// Revoke implements the issuer's store.
//
// By delegator or agent, it first writes a revocation mark in every shard
// (markScript, one pipelined round trip): from that step on, every
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
//   - A credential written before marks existed has no stamp, so no mark
//     hides it; its index lists it and it is revoked one by one, as it
//     always was.
func (s *Store) Revoke(ctx context.Context, sel issuer.Selector, mkEvent issuer.EventFunc) ([]string, error) {
	var shards []int
	switch sel.Kind {
	case issuer.ByAgent, issuer.ByDelegator:
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

// markMember is the member of sel's revocation marks.
func markMember(sel issuer.Selector) string {
	if sel.Kind == issuer.ByAgent {
		return "agent:" + sel.ID
	}
	return "delegator:" + sel.ID
}

// mark writes sel's revocation mark in every shard whose index lists
// credentials of it, in one pipelined round trip, and returns those shards.
func (s *Store) mark(ctx context.Context, sel issuer.Selector) ([]int, error) {
	calls := make([]scriptCall, len(s.shards))
	member, retention := markMember(sel), s.opts.MarkRetention.Milliseconds()
	for i, sh := range s.shards {
		calls[i] = scriptCall{keys: []string{sh.marks, indexKey(sh, sel)}, args: []any{member, retention}}
	}
	cmds, err := s.evalEach(ctx, markScript, calls)
	if err != nil {
		return nil, storeErr("write revocation marks", err)
	}
	var shards []int
	for i, cmd := range cmds {
		at, err := cmd.Int64()
		if err != nil {
			return nil, storeErr("write revocation marks", err)
		}
		if at != 0 {
			shards = append(shards, i)
		}
	}
	return shards, nil
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
				if err := send(revokeRun{i, []string{sel.ID}}); err != nil {
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
			if err := send(revokeRun{i, ids[:n:n]}); err != nil {
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
		roots := slices.DeleteFunc(creds, func(c *issuer.Credential) bool { return c == nil })
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
		creds, err := s.readStored(ctx, refs)
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
