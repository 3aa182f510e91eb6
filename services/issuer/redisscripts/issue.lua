-- issue.lua writes a credential, its indexes, its expiry schedule, its
-- expired record (for sweep.lua) and its issued (or exchanged) event, and
-- stamps the credential with the time it was written (Redis's clock, µs)
-- for the revocation marks. For a sub-agent's credential it first checks
-- that the parent is still live (its key exists and no mark covers it) and
-- links the child under it, so that revoking the parent finds it.
--
-- KEYS: cred task agent delegator expiry expired done outbox [parent parent_children marks]
-- ARGV: id expire_ms event_id subject payload expired_record fields...
--
-- The bracketed keys are given for an exchange only. fields are the
-- credential hash as field, value pairs.
-- Returns 1 when written, 0 when the task is completed, -1 when the id is
-- already live, -2 when the parent is no longer live.
local cred, task, agent, delegator = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expiry, expired, done, outbox = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local parent, parentChildren, marks = KEYS[9], KEYS[10], KEYS[11]
local id, exp = ARGV[1], tonumber(ARGV[2])
local eventID, subject, payload, record = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local firstField = 7

if redis.call('EXISTS', done) == 1 then return 0 end
if redis.call('EXISTS', cred) == 1 then return -1 end
if parent and (redis.call('EXISTS', parent) == 0 or markedRevoked(parent, marks)) then return -2 end
local now = redis.call('TIME')
redis.call('HSET', cred, F.Written, now[1] .. string.format('%06d', tonumber(now[2])), unpack(ARGV, firstField))
redis.call('PEXPIREAT', cred, exp)
-- parentChildren is nil unless this is an exchange: ipairs stops there.
for _, index in ipairs({task, agent, delegator, parentChildren}) do
  redis.call('SADD', index, id)
  if redis.call('PEXPIRETIME', index) < exp then
    redis.call('PEXPIREAT', index, exp)
  end
end
redis.call('ZADD', expiry, exp, id)
redis.call('HSET', expired, id, record)
redis.call('XADD', outbox, '*', E.ID, eventID, E.Subject, subject, E.Data, payload)
return 1
