#!lua
-- schedule_delete.lua — delete a schedule (promises it created stay).
--
-- KEYS[1] vow:{T}:sched:<id>   KEYS[2] vow:{T}:sched-due   KEYS[3] vow:{T}:sched-idx
-- ARGV[1] now   ARGV[2] request id   ARGV[3] schedule id
-- Returns 1 when it existed, 0 otherwise. Resend: deleting twice deletes once; a resend answers 0
-- (the caller treats 'already gone' after its own delete as done).

local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
return existed
