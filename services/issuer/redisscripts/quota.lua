-- quota.lua holds a place for a credential in its delegator's quota of
-- live credentials: quota is the delegator's credentials by expiry (ms),
-- kept in the delegator's home shard, since its credentials are in the
-- shards of their tasks. Those expired by now are dropped first; when
-- limit places are still held, nothing is written and the earliest expiry
-- is returned: the time a place frees up. The store releases the place
-- (ZREM) when the issue script refuses the credential and when the
-- credential is revoked.
--
-- KEYS: quota
-- ARGV: now_ms limit id expire_ms
--
-- Returns {1} when the place is held, {0, earliest expiry ms} when the
-- quota is full.
local quota = KEYS[1]
local now, limit, id, exp = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])

redis.call('ZREMRANGEBYSCORE', quota, '-inf', now)
if redis.call('ZCARD', quota) >= limit then
  local first = redis.call('ZRANGE', quota, 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2])}
end
redis.call('ZADD', quota, exp, id)
if redis.call('PEXPIRETIME', quota) < exp then
  redis.call('PEXPIREAT', quota, exp)
end
return {1}
