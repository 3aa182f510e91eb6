// Package redisstore keeps the issuer's live credentials in Redis: one hash
// per credential whose TTL is the truth for liveness, set indexes by task,
// agent and delegator, an expiry schedule swept into credential.expired
// events, and an outbox stream per shard that every write appends its
// lifecycle events to in the same Lua script, for the relay to publish.
// Revoking a delegator's or an agent's credentials first writes a
// revocation mark in every shard, which makes them all inactive at once,
// then deletes them one by one, each with its revoked event.
//
// Every key is "<prefix>:{<shard>}:…", the shard being a hash of the task
// id, so all keys a script touches share one hash tag and the store runs
// unchanged on Redis Cluster. A sub-agent's credential shares its parent's
// task, hence its shard, so a parent and all its descendants are revoked
// in one script:
//
//	<prefix>:{<shard>}:cred:<id>           hash, credential metadata; PEXPIREAT expiry
//	<prefix>:{<shard>}:task:<task id>      set of credential ids; TTL = latest expiry
//	<prefix>:{<shard>}:agent:<agent id>    set, shard-local part of the agent's index
//	<prefix>:{<shard>}:delegator:<id>      set, shard-local part of the delegator's index
//	<prefix>:{<shard>}:expiry              sorted set, credential id by expiry ms
//	<prefix>:{<shard>}:expired             hash, credential id → expired event (protobuf) and index ids
//	<prefix>:{<shard>}:children:<id>       set, credentials exchanged from <id>; TTL = latest expiry
//	<prefix>:{<shard>}:done:<task id>      string, the task was completed (DoneTTL)
//	<prefix>:{<shard>}:owner:<task id>     string, the platform owning the task; TTL = latest
//	                                       expiry + DoneTTL, at least DoneTTL after completion
//	<prefix>:{<home>}:quota:<delegator>    sorted set, the delegator's live credentials by expiry
//	                                       ms, in the shard of the delegator id's hash (quota.go)
//	<prefix>:{<shard>}:outbox              stream of events: id, subject, data
//	<prefix>:{<shard>}:revoked             sorted set, revocation marks: "delegator:<id>" or
//	                                       "agent:<id>" by Redis time (µs); TTL MarkRetention
//
// A credential hash holds, besides the credential, "did" and "aid" (the
// delegator's and agent's ids, for the scripts to find their marks) and
// "written" (Redis's time when it was written, µs): a credential written
// no later than a mark of its delegator or agent is not live.
//
// The Lua scripts, and the names of fields and keys they share with this
// package, are in package redisscripts; each runs here behind a typed
// wrapper (scripts.go).
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/pkg/eventbus"
	"github.com/jitid/jitid/services/issuer/internal/issuer"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// Defaults of Options.
const (
	DefaultPrefix  = "jitid"
	DefaultShards  = 16
	DefaultDoneTTL = 7 * 24 * time.Hour
	// DefaultMarkRetention is the issuer's default -max-ttl plus
	// MarkClockMargin.
	DefaultMarkRetention = time.Hour + MarkClockMargin
)

// MarkClockMargin is added to the longest credential life to make the
// retention of revocation marks: a credential's key expires at the
// ExpiresAt of the issuer's clock, its mark is stamped by Redis's, and the
// two may disagree (NTP keeps them to milliseconds; this is generous).
const MarkClockMargin = 5 * time.Minute

// Options configure a Store. The zero value means the defaults.
type Options struct {
	// Prefix is the first part of every key (DefaultPrefix when empty).
	Prefix string
	// Shards is the number of hash-tag shards (DefaultShards when zero). It
	// is fixed for the life of a deployment: changing it strands every key.
	Shards int
	// Source is the CloudEvents source of the events written
	// (eventbus.DefaultSource when empty).
	Source string
	// Events names the subjects events are published on.
	Events eventbus.Config
	// DoneTTL is how long a completed task is remembered, refusing new
	// credentials for it (DefaultDoneTTL when zero). Keep it longer than the
	// longest credential TTL.
	DoneTTL time.Duration
	// MarkRetention is how long a revocation mark is kept after it was
	// written (DefaultMarkRetention when zero): at least the longest life
	// of a credential (the issuer's -max-ttl) plus MarkClockMargin, since
	// a credential the mark covers must not come back to life before it
	// expires, should its revocation be cut short.
	MarkRetention time.Duration
	// Clock is the time source of the sweeper (time.Now when nil).
	Clock func() time.Time
	// Logger receives sweeper failures (slog.Default when nil).
	Logger *slog.Logger
	// Notify, when set, is called after every write that appended to an
	// outbox, e.g. the relay's Notify, so events go out without waiting for
	// the relay's next poll.
	Notify func()
	// DelegatorQuota, when above zero, is how many live credentials one
	// delegator may hold at once, across every task and platform; an
	// issuance or exchange past it is a *issuer.QuotaError. Zero: no quota.
	DelegatorQuota int
	// SweepClient, when set, is the client the sweeper uses instead of the
	// store's: a client of its own (a small pool) keeps its round trips
	// from queueing behind requests for a pooled connection when the store
	// is overloaded, which would slow a mass expiry's sweep to a crawl.
	SweepClient redis.UniversalClient
}

// Store is the Redis implementation of the issuer's credential store.
type Store struct {
	rdb    redis.UniversalClient
	opts   Options
	shards []shard
}

// shard holds the key names of one shard.
type shard struct {
	prefix  string // "<prefix>:{<n>}:"
	expiry  string
	expired string
	outbox  string
	marks   string
}

func (s shard) cred(id string) string      { return s.prefix + redisscripts.KeyCred + id }
func (s shard) task(id string) string      { return s.prefix + redisscripts.KeyTask + id }
func (s shard) agent(id string) string     { return s.prefix + redisscripts.KeyAgent + id }
func (s shard) delegator(id string) string { return s.prefix + redisscripts.KeyDelegator + id }
func (s shard) done(taskID string) string  { return s.prefix + redisscripts.KeyDone + taskID }
func (s shard) children(id string) string  { return s.prefix + redisscripts.KeyChildren + id }
func (s shard) owner(taskID string) string { return s.prefix + redisscripts.KeyOwner + taskID }
func (s shard) quota(id string) string     { return s.prefix + redisscripts.KeyQuota + id }

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	if o.Source == "" {
		o.Source = eventbus.DefaultSource
	}
	if o.DoneTTL <= 0 {
		o.DoneTTL = DefaultDoneTTL
	}
	if o.MarkRetention <= 0 {
		o.MarkRetention = DefaultMarkRetention
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// New returns a Store over rdb, which may be a single node, a failover or a
// cluster client.
func New(rdb redis.UniversalClient, opts Options) *Store {
	opts = opts.withDefaults()
	s := &Store{rdb: rdb, opts: opts, shards: make([]shard, opts.Shards)}
	for i := range s.shards {
		p := shardPrefix(opts.Prefix, i)
		s.shards[i] = shard{prefix: p, expiry: p + redisscripts.KeyExpiry, expired: p + redisscripts.KeyExpired,
			outbox: p + redisscripts.KeyOutbox, marks: p + redisscripts.KeyMarks}
	}
	return s
}

func shardPrefix(prefix string, n int) string {
	return prefix + ":{" + strconv.Itoa(n) + "}:"
}

// OutboxKeys returns the outbox stream of every shard for a key prefix and
// shard count, for the relay. Empty prefix and zero shards mean the defaults.
func OutboxKeys(prefix string, shards int) []string {
	o := Options{Prefix: prefix, Shards: shards}.withDefaults()
	keys := make([]string, o.Shards)
	for i := range keys {
		keys[i] = shardPrefix(o.Prefix, i) + redisscripts.KeyOutbox
	}
	return keys
}

// OutboxKeys returns the outbox stream of every shard.
func (s *Store) OutboxKeys() []string {
	keys := make([]string, len(s.shards))
	for i, sh := range s.shards {
		keys[i] = sh.outbox
	}
	return keys
}

// ShardOf returns the shard that holds a task's keys.
func (s *Store) ShardOf(taskID string) int {
	return int(crc32.ChecksumIEEE([]byte(taskID)) % uint32(len(s.shards)))
}

func (s *Store) shardOf(taskID string) shard { return s.shards[s.ShardOf(taskID)] }

func (s *Store) notify() {
	if s.opts.Notify != nil {
		s.opts.Notify()
	}
}

// storeErr wraps a Redis failure: connection failures, timeouts and a Redis
// that is loading, failing over or read-only are issuer.ErrStoreUnavailable;
// anything else (a script error is a bug) is returned wrapped as it is.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		return fmt.Errorf("redisstore: %s: %w: %w", op, issuer.ErrStoreUnavailable, err)
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

func unavailable(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted), errors.As(err, &netErr):
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "BUSY ", "MOVED", "ASK"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Connection resets and EOFs surface as plain errors from the client.
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// WatchHealth pings Redis every interval until ctx ends and calls report
// with whether it answered: once at the start, then on every change. A
// PING is the cheapest round trip that proves the store can answer.
func (s *Store) WatchHealth(ctx context.Context, interval time.Duration, report func(up bool)) {
	timeout := min(interval, time.Second)
	ping := func() bool {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return s.rdb.Ping(pctx).Err() == nil
	}
	up := ping()
	report(up)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := ping(); now != up && ctx.Err() == nil {
			up = now
			if up {
				s.opts.Logger.Info("redis answers again")
			} else {
				s.opts.Logger.Warn("redis unreachable: IssuerService health NOT_SERVING")
			}
			report(up)
		}
	}
}
