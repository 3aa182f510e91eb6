-- mark.lua writes a revocation mark in one shard: every credential of a
-- delegator (or agent) written in the shard no later than now (Redis's
-- clock, µs) is not live from this step on, for every script and read that
-- checks liveness. The revocation goes on to delete those credentials one
-- by one, each with its revoked event; the mark makes them inactive at
-- once. A shard where the index holds none of them gets no mark: any
-- credential written there later is written after the revocation.
--
-- A mark is needed only while a credential written before it can be live:
-- the retention covers the longest credential life plus clock margin. Marks
-- older than the retention are pruned here, and the sorted set expires
-- the retention after its latest mark. A mark never moves back (ZADD GT).
--
-- KEYS: marks index
-- ARGV: member retention_ms
--
-- index is the delegator's (or agent's) index in the shard, member
-- "delegator:<id>" (or "agent:<id>").
-- Returns the mark (µs) written, or 0 when the index is empty.
local marks, index = KEYS[1], KEYS[2]
local member, retention = ARGV[1], tonumber(ARGV[2])

if redis.call('EXISTS', index) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', marks, '-inf', '(' .. string.format('%.0f', now - retention * 1000))
redis.call('ZADD', marks, 'GT', string.format('%.0f', now), member)
if redis.call('PTTL', marks) < retention then
  redis.call('PEXPIRE', marks, retention)
end
return now
