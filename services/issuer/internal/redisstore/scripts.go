package redisstore

import "github.com/redis/go-redis/v9"

// The scripts below are the only writers of the store's keys. Each touches
// the keys of one shard only, all under one hash tag, so each runs on one
// Redis Cluster node as one atomic step. KEYS are always declared, except
// in the sweeper, which derives index and credential keys from the shard
// prefix it is given: they share the declared keys' hash tag, hence their
// slot, which Redis Cluster accepts.

// markBody defines markedRevoked(cred, marks): whether a credential is
// covered by a revocation mark (markScript) of its delegator or of its
// agent, that is, was written no later than the mark. Both times are
// Redis's clock (TIME), read in the scripts of one shard, hence of one
// Redis node: the issuers' clocks, and their skew, play no part. A
// credential written before marks existed has no written, did and aid
// fields and is never covered; it is revoked one by one, as it always was.
const markBody = `
local function markedRevoked(cred, marks)
  local f = redis.call('HMGET', cred, 'written', 'did', 'aid')
  if not f[1] then return false end
  local m = redis.call('ZMSCORE', marks, 'delegator:' .. f[2], 'agent:' .. f[3])
  local w = tonumber(f[1])
  return (m[1] and w <= tonumber(m[1])) or (m[2] and w <= tonumber(m[2])) or false
end
`

// issueScript writes a credential, its indexes, its expiry schedule, its
// expired event and its issued (or exchanged) event, and stamps the
// credential with the time it was written (Redis's clock, µs) for the
// revocation marks. For a sub-agent's credential it first checks that the
// parent is still live (its key exists and no mark covers it) and links the
// child under it, so that revoking the parent finds it.
//
// KEYS: cred, task index, agent index, delegator index, expiry, expired
// events, done marker, outbox; for an exchange also the parent's cred, the
// parent's children set and the shard's revocation marks.
// ARGV: id, expires-at ms, issued event id, subject, payload, expired
// record, then the credential hash as field, value pairs.
// Returns 1 when written, 0 when the task is completed, -1 when the id is
// already live, -2 when the parent is no longer live.
var issueScript = redis.NewScript(markBody + `
if redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if #KEYS >= 10 and (redis.call('EXISTS', KEYS[9]) == 0 or markedRevoked(KEYS[9], KEYS[11])) then return -2 end
local id = ARGV[1]
local exp = tonumber(ARGV[2])
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'written', now[1] .. string.format('%06d', tonumber(now[2])), unpack(ARGV, 7))
redis.call('PEXPIREAT', KEYS[1], exp)
local indexes = {2, 3, 4}
if #KEYS >= 10 then indexes[4] = 10 end
for _, i in ipairs(indexes) do
  redis.call('SADD', KEYS[i], id)
  if redis.call('PEXPIRETIME', KEYS[i]) < exp then
    redis.call('PEXPIREAT', KEYS[i], exp)
  end
end
redis.call('ZADD', KEYS[5], exp, id)
redis.call('HSET', KEYS[6], id, ARGV[6])
redis.call('XADD', KEYS[8], '*', 'id', ARGV[3], 'subject', ARGV[4], 'data', ARGV[5])
return 1
`)

// useScript counts one presentation of a use-limited credential, in the
// step that checks it is live (its key exists and no revocation mark
// covers it): HINCRBY on the credential's hash, compared with its
// max_uses; the presentation past it writes the use_refused event.
//
// KEYS: cred, outbox, the shard's revocation marks.
// ARGV: use_refused event id, subject, payload.
// Returns {0} when not live, {2, uses} when used up (event written), or
// {1, field, value, ...} the credential hash with uses counted.
var useScript = redis.NewScript(markBody + `
if redis.call('EXISTS', KEYS[1]) == 0 or markedRevoked(KEYS[1], KEYS[3]) then return {0} end
local max = tonumber(redis.call('HGET', KEYS[1], 'max_uses') or '0')
local uses = redis.call('HINCRBY', KEYS[1], 'uses', 1)
if max > 0 and uses > max then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'subject', ARGV[2], 'data', ARGV[3])
  return {2, uses}
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 1)
return out
`)

// markScript writes a revocation mark in one shard: every credential of a
// delegator (or agent) written in the shard no later than now (Redis's
// clock, µs) is not live from this step on, for every script and read that
// checks liveness. The revocation goes on to delete those credentials one
// by one, each with its revoked event; the mark makes them inactive at
// once. A shard where the index holds none of them gets no mark: any
// credential written there later is written after the revocation.
//
// A mark is needed only while a credential written before it can be live:
// the retention covers the longest credential life plus clock margin. Marks
// older than the retention are pruned here, and the sorted set expires
// the retention after its latest mark. A mark never moves back (ZADD GT).
//
// KEYS: marks, the delegator's (or agent's) index in the shard.
// ARGV: member ("delegator:<id>" or "agent:<id>"), retention ms.
// Returns the mark (µs) written, or 0 when the index is empty.
var markScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local retention = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - retention * 1000))
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', now), ARGV[1])
if redis.call('PTTL', KEYS[1]) < retention then
  redis.call('PEXPIRE', KEYS[1], retention)
end
return now
`)

// revokeBody revokes the credentials laid out from KEYS[first] and
// ARGV[firstArg] on, five keys (cred, task, agent, delegator index,
// children set) and four arguments (id, event id, subject, payload) each.
// A credential whose key is already gone (expired, or revoked by someone
// else) is skipped and yields no event: DEL is the arbiter.
const revokeBody = `
local function revoke(first, firstArg, n, out)
  for i = 0, n - 1 do
    local k = first + i * 5
    local a = firstArg + i * 4
    local id = ARGV[a]
    if redis.call('DEL', KEYS[k]) == 1 then
      redis.call('SREM', KEYS[k + 1], id)
      redis.call('SREM', KEYS[k + 2], id)
      redis.call('SREM', KEYS[k + 3], id)
      redis.call('DEL', KEYS[k + 4])
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('XADD', KEYS[3], '*', 'id', ARGV[a + 1], 'subject', ARGV[a + 2], 'data', ARGV[a + 3])
      out[#out + 1] = id
    end
  end
  return out
end
`

// revokeScript revokes some credentials of one shard, provided every live
// child of a live credential among them is among them too (the caller read
// the descendants; one exchanged since is a conflict, and the caller reads
// again): revoking a parent revokes its whole subtree in one step.
//
// KEYS: expiry, expired events, outbox, then five per credential.
// ARGV: shard key prefix ("<prefix>:{<shard>}:"), then four per credential.
// Returns {0} on a conflict, otherwise {1, ids revoked...}.
var revokeScript = redis.NewScript(revokeBody + `
local p = ARGV[1]
local n = (#KEYS - 3) / 5
local given = {}
for i = 0, n - 1 do given[ARGV[2 + i * 4]] = true end
for i = 0, n - 1 do
  local k = 4 + i * 5
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for _, child in ipairs(redis.call('SMEMBERS', KEYS[k + 4])) do
      if not given[child] and redis.call('EXISTS', p .. 'cred:' .. child) == 1 then return {0} end
    end
  end
end
return revoke(4, 2, n, {1})
`)

// completeScript revokes every live credential of a task, marks the task
// completed and writes the completed event, provided the caller's view of
// the task is still exact: the task index holds exactly the members it
// read, and every candidate it built an event for is still live. Otherwise
// nothing is written and the caller reads again, so that a credential issued
// between the read and this script is not left behind the completed mark,
// and the completed event lists exactly the credentials revoked.
//
// KEYS: expiry, expired events, outbox, done marker, task index, then five
// per candidate.
// ARGV: n candidates, m members, done TTL ms, completed event id, subject,
// payload, then four per candidate, then the m members.
// Returns {0} on a conflict, otherwise {1 or 2, ids revoked...}: 1 when the
// task was marked completed now, 2 when it was already.
var completeScript = redis.NewScript(revokeBody + `
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local firstMember = 7 + n * 4
if redis.call('SCARD', KEYS[5]) ~= m then return {0} end
for i = firstMember, firstMember + m - 1 do
  if redis.call('SISMEMBER', KEYS[5], ARGV[i]) == 0 then return {0} end
end
for i = 0, n - 1 do
  if redis.call('EXISTS', KEYS[6 + i * 5]) == 0 then return {0} end
end
local state = 1
if redis.call('EXISTS', KEYS[4]) == 1 then state = 2 end
local out = revoke(6, 7, n, {state})
if state == 1 then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[3])
  redis.call('XADD', KEYS[3], '*', 'id', ARGV[4], 'subject', ARGV[5], 'data', ARGV[6])
end
return out
`)

// sweepScript moves the expired events of credentials due by now to the
// outbox and removes what is left of them. Two replicas sweeping the same
// shard serialize on the script; the first removes the schedule entry, the
// second finds none, so each expired event is written once.
//
// A record in the current layout (see expiredRecord) becomes an outbox
// entry whose event is protobuf binary, field 'pb', for the relay to
// encode; one in the netstring layout of earlier issuers carries its
// CloudEvents JSON, field 'data', and moves as it is. Commands that take
// many keys or fields run once per sweep, not once per credential, after
// the loop: so a record that cannot be read is counted and removed rather
// than raising, which would leave the events written before it in the
// outbox and their credentials scheduled, to be written again next time.
//
// KEYS: expiry, expired events, outbox.
// ARGV: now ms, limit (at most maxSweepLimit: unpack has a bound), shard key
// prefix ("<prefix>:{<shard>}:"), subject of expired events.
// Returns {credentials swept, records that could not be read}.
var sweepScript = redis.NewScript(`
local function netstrings(s)
  local out = {}
  local i = 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    local n = c and tonumber(string.sub(s, i, c - 1))
    -- A negative length would loop for ever.
    if not n or n < 0 or n % 1 ~= 0 then error('not a netstring') end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end
-- parse returns event id, outbox field, event, subject, task, agent and
-- delegator ids.
local function parse(rec)
  if string.byte(rec, 1) == 2 then
    local ev, pb, task, agent, delegator = struct.unpack('>xI4c0I4c0I4c0I4c0I4c0', rec)
    return ev, 'pb', pb, ARGV[4], task, agent, delegator
  end
  local f = netstrings(rec)
  return f[1], 'data', f[3], f[2], f[4], f[5], f[6]
end
local p = ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {0, 0} end
local recs = redis.call('HMGET', KEYS[2], unpack(ids))
local creds = {}
local bad = 0
for i, id in ipairs(ids) do
  local rec = recs[i]
  if rec then
    local ok, ev, field, event, subject, task, agent, delegator = pcall(parse, rec)
    if ok and delegator then
      redis.call('XADD', KEYS[3], '*', 'id', ev, 'subject', subject, field, event)
      redis.call('SREM', p .. 'task:' .. task, id)
      redis.call('SREM', p .. 'agent:' .. agent, id)
      redis.call('SREM', p .. 'delegator:' .. delegator, id)
    else
      bad = bad + 1
    end
  end
  creds[i] = p .. 'cred:' .. id
end
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
redis.call('DEL', unpack(creds))
return {#ids, bad}
`)
