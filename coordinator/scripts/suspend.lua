#!lua
-- suspend.lua — give an execution back while its workflow waits on pending promises (their
-- callbacks are already registered). If a resume arrived meanwhile (wake flag), keep the lease
-- and answer 'wake' so the holder drives the workflow again at once. Fenced by the counter.
--
-- KEYS[1] vow:{T}:x:<id>
-- KEYS[2] vow:{T}:q:<group> holding the task entry (same partition), or any same-slot key
--         when ARGV[3] is ''
-- ARGV[1] fencing counter   ARGV[2] consumer group   ARGV[3] entry id ('' = other partition)
-- Returns 'ok' | 'wake' | 'fenced'.

local X = KEYS[1]
local x = redis.call('HMGET', X, 'c', 'o', 'w')
if x[1] ~= ARGV[1] or not x[2] then return 'fenced' end
if x[3] == '1' then
  redis.call('HSET', X, 'w', '0')
  return 'wake'
end
redis.call('HDEL', X, 'o', 'l', 'w')
if ARGV[3] ~= '' then
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
  redis.call('XDEL', KEYS[2], ARGV[3])
end
return 'ok'
