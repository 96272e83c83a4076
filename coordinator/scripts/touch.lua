#!lua
-- touch.lua — reset the idle time of stream entries this consumer still owns (a heartbeat for
-- the pending-entries list, so XAUTOCLAIM leaves them alone). XCLAIM ... JUSTID does not raise
-- the delivery count; the ownership check first makes it safe.
--
-- KEYS[1] vow:{T}:q:<group>
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer group   ARGV[4] consumer
-- ARGV[5..] entry ids
-- Returns the number of entries touched. Resend: touching twice is one touch.

local n = 0
for i = 5, #ARGV do
  if owns(KEYS[1], ARGV[3], ARGV[4], ARGV[i]) then
    redis.call('XCLAIM', KEYS[1], ARGV[3], ARGV[4], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
