#!lua
-- revive.lua — move one dead letter back onto its group's task stream (vow streams requeue), in
-- one step: only while the dead letter still holds the message the caller read, so two
-- concurrent requeues of one entry queue it once.
--
-- KEYS[1] vow:{T}:dead:<group>   KEYS[2] vow:{T}:q:<group>   KEYS[3] vow:{T}:groups
-- ARGV[1] now   ARGV[2] request id   ARGV[3] logic group   ARGV[4] dead letter entry id
-- ARGV[5] the message the caller read there   ARGV[6] the message to queue (delivery count reset)
-- Returns the new task entry id, or '' when the dead letter is gone (or changed).
-- Resend: the new entry carries the request id (field rq); a resend finds it and returns its id.

local rid = ARGV[2]
local found = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[4])
local message = nil
if found[1] then
  local fields = found[1][2]
  for j = 1, #fields, 2 do
    if fields[j] == 'm' then message = fields[j + 1] end
  end
end
if message == nil or message ~= ARGV[5] then return moved_by(KEYS[2], rid) or '' end
local new_id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[6], 'rq', rid)
redis.call('XDEL', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
return new_id
