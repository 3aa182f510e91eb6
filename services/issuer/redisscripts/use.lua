-- use.lua counts one presentation of a use-limited credential, in the
-- step that checks it is live (its key exists and no revocation mark
-- covers it): HINCRBY on the credential's hash, compared with its maximum;
-- the presentation past it writes the use-refused event.
--
-- KEYS: cred outbox marks
-- ARGV: event_id subject payload
--
-- Returns {0} when not live, {2, uses} when used up (event written), or
-- {1, field, value, ...}: the credential hash with this use counted.
local cred, outbox, marks = KEYS[1], KEYS[2], KEYS[3]
local eventID, subject, payload = ARGV[1], ARGV[2], ARGV[3]

if redis.call('EXISTS', cred) == 0 or markedRevoked(cred, marks) then return {0} end
local max = tonumber(redis.call('HGET', cred, F.MaxUses) or '0')
local uses = redis.call('HINCRBY', cred, F.Uses, 1)
if max > 0 and uses > max then
  redis.call('XADD', outbox, '*', E.ID, eventID, E.Subject, subject, E.Data, payload)
  return {2, uses}
end
local out = redis.call('HGETALL', cred)
table.insert(out, 1, 1)
return out
