package workload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jitid/jitid/bench/internal/load"
	"github.com/jitid/jitid/pkg/credverify"
	"github.com/jitid/jitid/pkg/eventbus"
	issuerv1 "github.com/jitid/jitid/proto/jitid/issuer/v1"
	"github.com/jitid/jitid/services/issuer/redisscripts"
)

// issueKeys and issueArgs are the contract of the issue script that
// RedisScriptRate lays its KEYS and ARGV out for.
const (
	issueKeys = "cred task agent delegator expiry expired done outbox owner [parent parent_children marks]"
	issueArgs = "id expire_ms event_id subject payload expired_record caller owner_ttl_ms fields..."
)

// benchDB is the Redis database redis-benchmark writes to, flushed after:
// the suite uses database 0.
const benchDB = 9

// RedisScriptRate runs redis-benchmark with 64 clients over an EVALSHA of
// the issuer's own issue script (redisscripts.Issue) with arguments as
// large as a real issuance's (the issued event, the expired record, the
// credential hash), and returns the requests per second it reports.
func RedisScriptRate(ctx context.Context, addr string, n int) (float64, error) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0, fmt.Errorf("redis address %q", addr)
	}
	if redisscripts.Issue.Keys != issueKeys || redisscripts.Issue.Args != issueArgs {
		return 0, fmt.Errorf("the issue script now takes KEYS %q, ARGV %q: lay them out here", redisscripts.Issue.Keys, redisscripts.Issue.Args)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: benchDB})
	defer rdb.Close()
	sha, err := rdb.ScriptLoad(ctx, redisscripts.Issue.Source).Result()
	if err != nil {
		return 0, err
	}
	defer rdb.FlushDB(context.Background())

	reqs := NewRequests("redisbench")
	event, err := eventbus.Encode(eventbus.DefaultSource, issuedEvent(reqs, 0, time.Now()))
	if err != nil {
		return 0, err
	}
	payload := strings.Repeat("x", len(event))
	exp := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	args := []string{"-h", host, "-p", port, "--dbnum", strconv.Itoa(benchDB), "-c", "64", "-n", strconv.Itoa(n),
		"-r", "100000000", "--csv", "EVALSHA", sha, "9",
		"rb:{s}:cred:__rand_int__", "rb:{s}:task:__rand_int__", "rb:{s}:agent:__rand_int__", "rb:{s}:delegator:__rand_int__",
		"rb:{s}:expiry", "rb:{s}:expired", "rb:{s}:done:__rand_int__", "rb:{s}:outbox", "rb:{s}:owner:__rand_int__",
		"cred-__rand_int__", exp, "ev-__rand_int__", "jitid.events.credential.issued", payload, payload + "record-fields",
		"spiffe://bench.example/platform/bench", strconv.FormatInt((7 * 24 * time.Hour).Milliseconds(), 10),
	}
	// The credential hash: the fields the issuer stores, at their sizes.
	for _, f := range []struct {
		name string
		size int
	}{{redisscripts.FieldIssuer, 19}, {redisscripts.FieldAudience, 5}, {redisscripts.FieldAgent, 120},
		{redisscripts.FieldDelegator, 90}, {redisscripts.FieldTask, 130}, {redisscripts.FieldScopes, 34},
		{redisscripts.FieldIssuedAt, 19}, {redisscripts.FieldExpiresAt, 19}, {redisscripts.FieldProfile, 1},
		{redisscripts.FieldPolicyVersion, 16}, {redisscripts.FieldDecisionID, 36},
		{redisscripts.FieldDelegatorID, 10}, {redisscripts.FieldAgentID, 10}, {redisscripts.FieldOwner, 38}} {
		args = append(args, f.name, strings.Repeat("v", f.size))
	}
	out, err := exec.CommandContext(ctx, "redis-benchmark", args...).CombinedOutput() //nolint:gosec // G204: redis-benchmark with the suite's own arguments
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w: %s", err, out)
	}
	return ParseRedisBenchmarkCSV(out)
}

// ParseRedisBenchmarkCSV returns the requests per second of the first test
// in redis-benchmark --csv output.
func ParseRedisBenchmarkCSV(out []byte) (float64, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark output: %w", err)
	}
	for _, rec := range recs {
		if len(rec) < 2 || rec[0] == "test" {
			continue
		}
		return strconv.ParseFloat(rec[1], 64)
	}
	return 0, fmt.Errorf("redis-benchmark printed no result: %s", out)
}

// CommandStats returns Redis's calls per command (INFO commandstats).
func CommandStats(ctx context.Context, addr string) (map[string]int64, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	return ParseCommandStats(info), nil
}

// ParseCommandStats reads "cmdstat_<name>:calls=N,..." lines.
func ParseCommandStats(info string) map[string]int64 {
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "cmdstat_"), ":")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[name] = n
				}
			}
		}
	}
	return out
}

// Verifier returns the offline verifier of pkg/credverify, with the
// issuer's published keys.
func Verifier(ctx context.Context, p *Pool) (*credverify.Verifier, error) {
	resp, err := p.Issuers()[0].GetSigningKeys(ctx, &issuerv1.GetSigningKeysRequest{})
	if err != nil {
		return nil, err
	}
	keys, err := credverify.NewStaticKeys([]byte(resp.GetJwks()))
	if err != nil {
		return nil, err
	}
	return credverify.New(credverify.Options{Issuer: resp.GetIssuer(), Audience: "jitid", Keys: keys})
}

// Verify verifies tokens offline, in this process: the reference for
// introspection, which adds a network hop and a Redis read to it.
func Verify(v *credverify.Verifier, tokens []string) load.Call {
	return func(ctx context.Context, w int, seq uint64) error {
		_, err := v.Verify(ctx, tokens[(uint64(w)*7919+seq)%uint64(len(tokens))], "tickets:read")
		return err
	}
}

// RedisPID returns the process id of the Redis server (INFO server).
func RedisPID(ctx context.Context, addr string) (int, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO server")
}
