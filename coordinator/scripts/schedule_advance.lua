#!lua
-- schedule_advance.lua — after a tick's promise exists, move the schedule to its next tick, only
-- if no other process moved it meanwhile (compare-and-set on the tick it was due at).
--
-- KEYS[1] vow:{T}:sched:<id>   KEYS[2] vow:{T}:sched-due
-- ARGV[1] now   ARGV[2] request id   ARGV[3] schedule id   ARGV[4] the due tick read, epoch ms
-- ARGV[5] the tick fired, epoch ms   ARGV[6] its promise id   ARGV[7] the next tick, epoch ms
-- Returns 'advanced' | 'moved' (another process advanced it first, or it was deleted).
-- Resend: the schedule is no longer due at ARGV[4] but shows this tick fired: 'advanced'.

local S, DUE = KEYS[1], KEYS[2]
local f = redis.call('HMGET', S, 'nt', 'lt')
if not f[1] then return 'moved' end
if f[1] ~= ARGV[4] then
  if f[2] == ARGV[5] and f[1] == ARGV[7] then return 'advanced' end
  return 'moved'
end
redis.call('HSET', S, 'nt', ARGV[7], 'lt', ARGV[5], 'lp', ARGV[6])
redis.call('ZADD', DUE, ARGV[7], ARGV[3])
return 'advanced'
