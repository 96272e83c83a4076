#!lua
-- release.lua — let go of an execution lease without committing (shutdown, or a function this
-- worker does not have), so another worker can claim it at once. Fenced by the counter.
--
-- KEYS[1] vow:{T}:x:<id>   KEYS[2] vow:{T}:leases
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] fencing counter
-- Returns 'ok' when released, 'fenced' when the lease was no longer held with this counter.
-- Resend: answered from the execution record's last request (q/a) as the first run was.

local X, LEASES = KEYS[1], KEYS[2]
local rid = ARGV[2]
local done = replayed(X, rid)
if done then return done end
if not holds(X, ARGV[4]) then return 'fenced' end
redis.call('HDEL', X, 'o', 'l', 'w')
redis.call('ZREM', LEASES, ARGV[3])
return answer(X, rid, 'ok')
