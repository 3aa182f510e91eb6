-- issue.lua writes a credential, its indexes, its expiry schedule, its
-- expired record (for sweep.lua) and its issued (or exchanged) event, and
-- stamps the credential with the time it was written (Redis's clock, µs)
-- for the revocation marks. For a sub-agent's credential it first checks
-- that the parent is still live (its key exists and no mark covers it) and
-- links the child under it, so that revoking the parent finds it.
--
-- The task belongs to the platform of its first issuance: owner holds
-- it, and an issuance or exchange by another platform is refused before
-- anything is written, whatever else holds (a completed task included, so
-- that another platform learns nothing of it). owner lives owner_ttl_ms
-- past the latest expiry of the task's credentials.
--
-- KEYS: cred task agent delegator expiry expired done outbox owner [parent parent_children marks]
-- ARGV: id expire_ms event_id subject payload expired_record caller owner_ttl_ms fields...
--
-- The bracketed keys are given for an exchange only. caller is the platform
-- asking (it owns the credential). fields are the credential hash as field,
-- value pairs.
-- Returns 1 when written, 0 when the task is completed, -1 when the id is
-- already live, -2 when the parent is no longer live, -3 when the task
-- belongs to another platform.
local cred, task, agent, delegator = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expiry, expired, done, outbox, owner = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local parent, parentChildren, marks = KEYS[10], KEYS[11], KEYS[12]
local id, exp = ARGV[1], tonumber(ARGV[2])
local eventID, subject, payload, record = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local caller, ownerTTL = ARGV[7], tonumber(ARGV[8])
local firstField = 9

local taskOwner = redis.call('GET', owner)
if taskOwner and taskOwner ~= caller then return -3 end
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
if not taskOwner then redis.call('SET', owner, caller) end
if redis.call('PEXPIRETIME', owner) < exp + ownerTTL then
  redis.call('PEXPIREAT', owner, exp + ownerTTL)
end
redis.call('ZADD', expiry, exp, id)
redis.call('HSET', expired, id, record)
redis.call('XADD', outbox, '*', E.ID, eventID, E.Subject, subject, E.Data, payload)
return 1
