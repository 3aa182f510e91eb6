package redisstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/services/issuer/internal/issuer"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

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
			// Another owner's credential is skipped like a dead one: the
			// page token is a position in the index, so pages stay exact.
			if c != nil && (sel.Owner == "" || c.Owner == sel.Owner) {
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
