package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

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
		if live && len(h) > 0 && marked[r.shard].Val() > 0 {
			check = append(check, i)
		}
	}
	scores := make(map[int]*redis.FloatSliceCmd, len(check))
	if len(check) > 0 {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range check {
				h := hashes[i].Val()
				scores[i] = p.ZMScore(ctx, s.shards[refs[i].shard].marks,
					markMember(issuer.Selector{Kind: issuer.ByDelegator, ID: h[redisscripts.FieldDelegatorID]}),
					markMember(issuer.Selector{Kind: issuer.ByAgent, ID: h[redisscripts.FieldAgentID]}))
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
		if sc, ok := scores[i]; ok {
			covered, err := coveredByMark(h[redisscripts.FieldWritten], sc.Val())
			if err != nil {
				return nil, fmt.Errorf("redisstore: credential %s: %w", refs[i].id, err)
			}
			if covered {
				continue
			}
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
func coveredByMark(written string, marks []float64) (bool, error) {
	w, err := strconv.ParseInt(written, 10, 64)
	if err != nil {
		return false, fmt.Errorf("written: %w", err)
	}
	for _, m := range marks {
		if m > 0 && float64(w) <= m {
			return true, nil
		}
	}
	return false, nil
}
