#!lua
-- suspend.lua — give an execution back while its workflow waits on pending promises (their
-- callbacks are already registered). If a resume arrived meanwhile (wake flag), keep the lease
-- and answer 'wake' so the holder drives the workflow again at once. Fenced by the counter.
--
-- KEYS[1] vow:{T}:x:<id>   KEYS[2] vow:{T}:leases
-- KEYS[3] vow:{T}:q:<group> holding the task entry (same partition); any same-slot key when
--         ARGV[6] is ''
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] fencing counter
-- ARGV[5] consumer group   ARGV[6] entry id ('' = the entry is in another partition)
-- Returns 'ok' | 'wake' | 'fenced'.
-- Resend: answered from the execution record's last request (q/a) — a lost 'wake' answered
-- 'ok' on resend would leave the workflow suspended with its resume already spent.

local X, LEASES = KEYS[1], KEYS[2]
local rid = ARGV[2]
local done = replayed(X, rid)
if done then return done end
if not holds(X, ARGV[4]) then return 'fenced' end
if redis.call('HGET', X, 'w') == '1' then
  redis.call('HSET', X, 'w', '0')
  return answer(X, rid, 'wake')
end
redis.call('HDEL', X, 'o', 'l', 'w', 'r', 'g', 'm')  -- g, m: only a held lease needs them
redis.call('ZREM', LEASES, ARGV[3])
if ARGV[6] ~= '' then ack_entry(KEYS[3], ARGV[5], ARGV[6]) end
return answer(X, rid, 'ok')
