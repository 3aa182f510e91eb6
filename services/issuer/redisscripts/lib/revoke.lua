-- revoke(expiry, expired, outbox, first, firstArg, n, out) revokes the n
-- credentials laid out from KEYS[first] and ARGV[firstArg] on, five keys
-- (cred, task, agent and delegator index, children set) and four
-- arguments (id, event id, subject, payload) each, and appends the ids it
-- revoked to out. A credential whose key is already gone (expired, or
-- revoked by someone else) is skipped and yields no event: DEL is the
-- arbiter.
local function revoke(expiry, expired, outbox, first, firstArg, n, out)
  for i = 0, n - 1 do
    local k = first + i * 5
    local a = firstArg + i * 4
    local id = ARGV[a]
    if redis.call('DEL', KEYS[k]) == 1 then
      redis.call('SREM', KEYS[k + 1], id)
      redis.call('SREM', KEYS[k + 2], id)
      redis.call('SREM', KEYS[k + 3], id)
      redis.call('DEL', KEYS[k + 4])
      redis.call('ZREM', expiry, id)
      redis.call('HDEL', expired, id)
      redis.call('XADD', outbox, '*', E.ID, ARGV[a + 1], E.Subject, ARGV[a + 2], E.Data, ARGV[a + 3])
      out[#out + 1] = id
    end
  end
  return out
end
