-- revoke.lua revokes some credentials of one shard, provided every live
-- child of a live credential among them is among them too (the caller read
-- the descendants; one exchanged since is a conflict, and the caller reads
-- again): revoking a parent revokes its whole subtree in one step.
--
-- KEYS: expiry expired outbox {cred task agent delegator children}...
-- ARGV: prefix {id event_id subject payload}...
--
-- The braced keys and arguments come once per credential; prefix is the
-- shard's key prefix ("<prefix>:{<shard>}:").
-- Returns {0} on a conflict, otherwise {1, ids revoked...}.
local expiry, expired, outbox = KEYS[1], KEYS[2], KEYS[3]
local prefix = ARGV[1]
local firstCred, firstArg = 4, 2
local n = (#KEYS - 3) / 5

local given = {}
for i = 0, n - 1 do given[ARGV[firstArg + i * 4]] = true end
for i = 0, n - 1 do
  local k = firstCred + i * 5
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for _, child in ipairs(redis.call('SMEMBERS', KEYS[k + 4])) do
      if not given[child] and redis.call('EXISTS', prefix .. K.Cred .. child) == 1 then return {0} end
    end
  end
end
return revoke(expiry, expired, outbox, firstCred, firstArg, n, {1})
