#!lua
-- purge.lua — remove one completed promise now, with every key and index entry (an operator's
-- `vow promises purge`). A pending promise is never removed.
--
-- KEYS[1] vow:{T}:p:<id> (the rest is derive()d from it)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id
-- ARGV[4] state family required: resolved | rejected | '' (either)
-- ARGV[5] completed before, epoch ms ('' = any time)
-- Returns 1 (removed) or 0 (absent, pending, or not matching).
-- Resend: the second run finds nothing to remove.

local f = redis.call('HMGET', KEYS[1], 'state', 'cd')
if f[1] == false or f[1] == 'PENDING' then return 0 end
if ARGV[4] == 'resolved' and f[1] ~= 'RESOLVED' then return 0 end
if ARGV[4] == 'rejected' and string.sub(f[1], 1, 8) ~= 'REJECTED' then return 0 end
if ARGV[5] ~= '' then
  local done = tonumber(f[2])
  if done == nil or done >= tonumber(ARGV[5]) then return 0 end
end
forget(KEYS[1], ARGV[3])
return 1
