#!lua
-- schedule_create.lua — create a schedule, or answer for an existing one: the stored schedule
-- when both idempotency keys are set and equal, else 'exists'.
--
-- KEYS[1] vow:{T}:sched:<id>   KEYS[2] vow:{T}:sched-due   KEYS[3] vow:{T}:sched-idx
-- ARGV[1] now   ARGV[2] request id   ARGV[3] schedule id   ARGV[4] cron   ARGV[5] time zone
-- ARGV[6] promise id template   ARGV[7] promise timeout, ms   ARGV[8] promise headers (msgpack)
-- ARGV[9] promise data present ('1'/'0')   ARGV[10] promise data   ARGV[11] promise tags (msgpack)
-- ARGV[12] idempotency key ('' = none)   ARGV[13] description   ARGV[14] first tick, epoch ms
-- Returns {status, record fields}: created | dedup | exists.
-- Resend: the record's request id (rq) is this request's: answered 'created'.

local S, DUE, IDX = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local rid, id, ikey = ARGV[2], ARGV[3], ARGV[12]
if redis.call('EXISTS', S) == 1 then
  local f = redis.call('HMGET', S, 'rq', 'ik')
  if f[1] == rid then return {'created', redis.call('HGETALL', S)} end
  if ikey ~= '' and f[2] == ikey then return {'dedup', redis.call('HGETALL', S)} end
  return {'exists', redis.call('HGETALL', S)}
end
redis.call('HSET', S, 'id', id, 'cron', ARGV[4], 'tz', ARGV[5], 'pid', ARGV[6], 'pto', ARGV[7],
  'ph', ARGV[8], 'pt', ARGV[11], 'desc', ARGV[13], 'co', ms(now), 'nt', ARGV[14], 'rq', rid)
if ARGV[9] == '1' then redis.call('HSET', S, 'pd', ARGV[10]) end
if ikey ~= '' then redis.call('HSET', S, 'ik', ikey) end
redis.call('ZADD', DUE, ARGV[14], id)
redis.call('ZADD', IDX, ms(now), id)
return {'created', redis.call('HGETALL', S)}
