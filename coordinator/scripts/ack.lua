#!lua
-- ack.lua — acknowledge and delete stream entries, only those this consumer still owns (a
-- worker that lost an entry to XAUTOCLAIM cannot ack it). Deleting keeps streams from growing
-- with finished work.
--
-- KEYS[1] vow:{T}:q:<group>
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer group   ARGV[4] consumer
-- ARGV[5..] entry ids
-- Returns how many of the entries are acknowledged now: acked by this call, or no longer pending
-- to anyone (so a resend answers as the first run did); an entry another consumer owns is not.

local n = 0
for i = 5, #ARGV do
  if owns(KEYS[1], ARGV[3], ARGV[4], ARGV[i]) then
    ack_entry(KEYS[1], ARGV[3], ARGV[i])
    n = n + 1
  elseif settled_entry(KEYS[1], ARGV[3], ARGV[i]) then
    n = n + 1
  end
end
return n
