-- complete.lua revokes every live credential of a task, marks the task
-- completed and writes the completed event, provided the caller's view of
-- the task is still exact: the task index holds exactly the members it
-- read, and every candidate it built an event for is still live. Otherwise
-- nothing is written and the caller reads again, so that a credential issued
-- between the read and this script is not left behind the completed mark,
-- and the completed event lists exactly the credentials revoked.
--
-- KEYS: expiry expired outbox done task {cred task agent delegator children}...
-- ARGV: done_ttl_ms event_id subject payload {id event_id subject payload}... members...
--
-- The braced keys and arguments come once per candidate; members are the
-- task index's members as the caller read them.
-- Returns {0} on a conflict, otherwise {1 or 2, ids revoked...}: 1 when the
-- task was marked completed now, 2 when it was already.
local expiry, expired, outbox, done, task = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local doneTTL, eventID, subject, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local firstCand, firstArg = 6, 5
local n = (#KEYS - 5) / 5
local firstMember = firstArg + n * 4

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
  redis.call('XADD', outbox, '*', E.ID, eventID, E.Subject, subject, E.Data, payload)
end
return out
