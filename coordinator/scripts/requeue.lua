#!lua
-- requeue.lua — move an owned entry to the back of its stream (a fresh entry carrying the new
-- message) or to the group's dead-letter stream with the reason, in one step. Only the current
-- owner may do it.
--
-- KEYS[1] vow:{T}:q:<group>   KEYS[2] vow:{T}:dead:<group>
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer group   ARGV[4] consumer   ARGV[5] entry id
-- ARGV[6] message   ARGV[7] 'queue' | 'dead'   ARGV[8] reason (dead)   ARGV[9] deliveries (dead)
-- Returns the new entry id, or '' when the entry is no longer owned by this consumer.
-- Resend: the new entry carries the request id (field rq); a resend finds it and returns its id.

local rid = ARGV[2]
local target = KEYS[1]
if ARGV[7] == 'dead' then target = KEYS[2] end
if not owns(KEYS[1], ARGV[3], ARGV[4], ARGV[5]) then return moved_by(target, rid) or '' end
local new_id
if ARGV[7] == 'dead' then
  new_id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[6], 'reason', ARGV[8], 'from', ARGV[5],
    'consumer', ARGV[4], 'deliveries', ARGV[9], 'rq', rid)
else
  new_id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[6], 'rq', rid)
end
ack_entry(KEYS[1], ARGV[3], ARGV[5])
return new_id
