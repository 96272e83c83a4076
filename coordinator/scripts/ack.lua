#!lua
-- ack.lua — acknowledge and delete stream entries, only those this consumer still owns (a
-- worker that lost an entry to XAUTOCLAIM cannot ack it). Deleting keeps streams from growing
-- with finished work.
--
-- KEYS[1] vow:{T}:q:<group>
-- ARGV[1] consumer group   ARGV[2] consumer   ARGV[3..] entry ids
-- Returns the number of entries acknowledged.

local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    n = n + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
return n
