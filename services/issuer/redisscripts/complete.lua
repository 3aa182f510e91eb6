-- complete.lua revokes every live credential of a task, marks the task
-- completed and writes the completed event, provided the caller's view of
-- the task is still exact: the task index holds exactly the members it
-- read, and every candidate it built an event for is still live. Otherwise
-- nothing is written and the caller reads again, so that a credential issued
-- between the read and this script is not left behind the completed mark,
-- and the completed event lists exactly the credentials revoked.
--
-- Only the task's owner (the platform of its first issuance), or an admin,
-- completes it; a task without an owner was never issued for (or so long
-- ago that it is forgotten), and completing it would only block its owner
-- to come: both are refused with nothing written. Completing keeps the
-- owner as long as the completed mark.
--
-- KEYS: expiry expired outbox done task owner {cred task agent delegator children}...
-- ARGV: done_ttl_ms event_id subject payload caller admin {id event_id subject payload}... members...
--
-- The braced keys and arguments come once per candidate; members are the
-- task index's members as the caller read them. admin is "1" when the
-- caller is an admin, "0" otherwise.
-- Returns {0} on a conflict, {-1} when the task has no owner, {-2} when
-- it belongs to another platform than caller (not an admin), otherwise
-- {1 or 2, ids revoked...}: 1 when the task was marked completed now, 2
-- when it was already.
local expiry, expired, outbox, done, task, owner = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local doneTTL, eventID, subject, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local caller, admin = ARGV[5], ARGV[6]
local firstCand, firstArg = 7, 7
local n = (#KEYS - 6) / 5
local firstMember = firstArg + n * 4

local taskOwner = redis.call('GET', owner)
if not taskOwner then return {-1} end
if taskOwner ~= caller and admin ~= '1' then return {-2} end

if redis.call('SCARD', task) ~= #ARGV - firstMember + 1 then return {0} end
for i = firstMember, #ARGV do
  if redis.call('SISMEMBER', task, ARGV[i]) == 0 then return {0} end
end
for i = 0, n - 1 do
  if redis.call('EXISTS', KEYS[firstCand + i * 5]) == 0 then return {0} end
end
local state = 1
if redis.call('EXISTS', done) == 1 then state = 2 end
local out = revoke(expiry, expired, outbox, firstCand, firstArg, n, {state})
if state == 1 then
  redis.call('SET', done, '1', 'PX', doneTTL)
  if redis.call('PTTL', owner) < tonumber(doneTTL) then
    redis.call('PEXPIRE', owner, doneTTL)
  end
  redis.call('XADD', outbox, '*', E.ID, eventID, E.Subject, subject, E.Data, payload)
end
return out
