-- sweep.lua moves the expired events of credentials due by now to the
-- outbox and removes what is left of them. Two replicas sweeping the same
-- shard serialize on the script; the first removes the schedule entry, the
-- second finds none, so each expired event is written once.
--
-- An expired record (written by issue.lua) is each of event id, event
-- (protobuf binary), task, agent and delegator ids as a 4-byte big-endian
-- length and its bytes; the event becomes an outbox entry's field pb, for
-- the relay to encode. Commands that take many keys or fields run once per
-- sweep, not once per credential, after the loop: so a record that cannot
-- be read is counted and removed rather than raising, which would leave the
-- events written before it in the outbox and their credentials scheduled,
-- to be written again next time.
--
-- KEYS: expiry expired outbox
-- ARGV: now_ms limit prefix subject
--
-- limit is at most 4096 (unpack has a bound); prefix is the shard's key
-- prefix ("<prefix>:{<shard>}:"), subject that of expired events.
-- Returns {credentials swept, records that could not be read}.
local expiry, expired, outbox = KEYS[1], KEYS[2], KEYS[3]
local now, limit, prefix, subject = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local ids = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, limit)
if #ids == 0 then return {0, 0} end
local recs = redis.call('HMGET', expired, unpack(ids))
local creds = {}
local bad = 0
for i, id in ipairs(ids) do
  local rec = recs[i]
  if rec then
    local ok, ev, event, task, agent, delegator = pcall(struct.unpack, '>I4c0I4c0I4c0I4c0I4c0', rec)
    if ok then
      redis.call('XADD', outbox, '*', E.ID, ev, E.Subject, subject, E.PB, event)
      redis.call('SREM', prefix .. K.Task .. task, id)
      redis.call('SREM', prefix .. K.Agent .. agent, id)
      redis.call('SREM', prefix .. K.Delegator .. delegator, id)
    else
      bad = bad + 1
    end
  end
  creds[i] = prefix .. K.Cred .. id
end
redis.call('ZREM', expiry, unpack(ids))
redis.call('HDEL', expired, unpack(ids))
redis.call('DEL', unpack(creds))
return {#ids, bad}
