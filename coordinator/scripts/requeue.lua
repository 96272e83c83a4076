#!lua
-- requeue.lua — move an owned entry to the back of its stream (a fresh entry carrying the new
-- message) or to the dead-letter stream, in one step. Only the current owner may do it.
--
-- KEYS[1] vow:{T}:q:<group>   KEYS[2] vow:{T}:dead:<group>
-- ARGV[1] consumer group   ARGV[2] consumer   ARGV[3] entry id   ARGV[4] message
-- ARGV[5] 'queue' | 'dead'   ARGV[6] reason (dead)   ARGV[7] deliveries (dead)
-- Returns the new entry id, or '' when the entry is no longer owned by this consumer.

local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return '' end
local new_id
if ARGV[5] == 'dead' then
  new_id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[4], 'reason', ARGV[6], 'from', ARGV[3],
    'consumer', ARGV[2], 'deliveries', ARGV[7])
else
  new_id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return new_id
