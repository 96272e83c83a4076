#!lua
-- consumers.lua — remove consumers of a group's stream that hold no entry: this worker itself on
-- a graceful stop (ARGV[4] = its name), or every consumer idle for ARGV[5] ms or more (dead
-- workers; redis/redis #11567: consumers never expire by themselves). A consumer that still holds
-- entries is never removed (that would orphan them: nobody could claim them by owner).
--
-- KEYS[1] vow:{T}:q:<group>
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer group
-- ARGV[4] consumer name ('' = any)   ARGV[5] minimum idle ms ('' = any)
-- Returns the number of consumers removed.
-- Resend: a removed consumer is not there the second time.

if redis.call('TYPE', KEYS[1])['ok'] ~= 'stream' then return 0 end
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[3])
if consumers['err'] then return 0 end  -- no such group
local min_idle = tonumber(ARGV[5])
local removed = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local wanted = (ARGV[4] == '' or info['name'] == ARGV[4])
    and (min_idle == nil or (tonumber(info['idle']) or 0) >= min_idle)
  if wanted and tonumber(info['pending']) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[3], info['name'])
    removed = removed + 1
  end
end
return removed
