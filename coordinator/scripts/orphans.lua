#!lua
-- orphans.lua — the second line of defence: re-queue the task of every execution whose lease
-- lapsed more than a grace period ago with nobody claiming it again. Normally the lapsed task's
-- stream entry is taken over (XAUTOCLAIM) and claimed long before; this finds the executions
-- whose entry is gone (acknowledged after a lost reply, trimmed by hand), so that no sequence of
-- lost replies or crashes can strand a pending promise. O(due) over the partition's lease index.
--
-- KEYS[1] vow:{T}:leases (zset: id -> lease end, written by claim/heartbeat, cleared by commit)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] limit   ARGV[4] grace, ms
-- The execution record, promise record and task stream of id are derive()d from KEYS[1].
-- Returns {re-queued count, more due ('1'/'0')}.
-- Each re-queue releases the lease and counts itself in the execution record (r); the entry
-- carries that count (field n) so a task that keeps dying is dead-lettered by the delivery limit.
-- Resend: a re-queued id has left the index, so a resend re-queues nothing twice.

local LEASES = KEYS[1]
local now = clock(ARGV[1])
local limit = tonumber(ARGV[3])
local before = now - tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', LEASES, '-inf', ms(before), 'LIMIT', 0, limit + 1)
local count = 0
for i = 1, math.min(#due, limit) do
  local id = due[i]
  local X = derive(LEASES, 'x:' .. id)
  local P = derive(LEASES, 'p:' .. id)
  local x = redis.call('HMGET', X, 'o', 'l', 'g', 'm')
  local state = false
  if redis.call('TYPE', P)['ok'] == 'hash' then state = redis.call('HGET', P, 'state') end
  local lapsed = not (tonumber(x[2]) and tonumber(x[2]) > before)
  if x[1] and not lapsed then
    redis.call('ZADD', LEASES, x[2], id)  -- extended meanwhile: watch the new lease end
  elseif x[1] and state == 'PENDING' and x[3] and x[4] then
    local r = redis.call('HINCRBY', X, 'r', 1)
    redis.call('HDEL', X, 'o', 'l', 'w')
    redis.call('XADD', derive(LEASES, 'q:' .. x[3]), '*', 'm', x[4], 'n', r)
    redis.call('ZREM', LEASES, id)
    count = count + 1
  else
    -- released, committed, or its promise completed by someone else: nothing left to watch
    if state ~= 'PENDING' and lapsed then redis.call('DEL', X) end
    redis.call('ZREM', LEASES, id)
  end
end
local more = '0'
if #due > limit then more = '1' end
return {count, more}
