-- markedRevoked(cred, marks) reports whether an existing credential is
-- covered by a revocation mark (mark.lua) of its delegator or of its
-- agent, that is, was written no later than the mark. Both times are
-- Redis's clock (TIME), read in the scripts of one shard, hence of one
-- Redis node: the issuers' clocks, and their skew, play no part.
local function markedRevoked(cred, marks)
  local f = redis.call('HMGET', cred, F.Written, F.DelegatorID, F.AgentID)
  local m = redis.call('ZMSCORE', marks, M.Delegator .. f[2], M.Agent .. f[3])
  local w = tonumber(f[1])
  return (m[1] and w <= tonumber(m[1])) or (m[2] and w <= tonumber(m[2])) or false
end
