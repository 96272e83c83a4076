#!lua
-- touch.lua — reset the idle time of stream entries this consumer still owns (a heartbeat for
-- the pending-entries list, so XAUTOCLAIM leaves them alone). XCLAIM ... JUSTID does not raise
-- the delivery count; the ownership check first makes it safe.
--
-- KEYS[1] vow:{T}:q:<group>
-- ARGV[1] consumer group   ARGV[2] consumer   ARGV[3..] entry ids
-- Returns the number of entries touched.

local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
