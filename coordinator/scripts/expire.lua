#!lua
-- expire.lua — the expiry pass of one partition: remove each completed promise whose retention
-- has passed, at most ARGV[4] per call. Cost is O(expired) (ZRANGEBYSCORE on the expiry index).
-- A promise tagged with an anchor (the tag ARGV[3], the SDK's vow:root: the workflow it is a step
-- of) naming another id is not removed here: it is returned, and the caller, which reads the
-- anchor (it may live in another partition), passes a verdict back in its next call: remove it,
-- keep it until a time, or keep it for ever. So a workflow's steps outlive the workflow, and a
-- pending workflow never loses a step it may replay.
--
-- KEYS[1] vow:{T}:expiry (the record, its other keys and the indexes are derive()d from it)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] anchor tag   ARGV[4] limit
-- ARGV[5..] verdicts, pairs (id, keep until epoch ms | '0' remove now | '-1' keep for ever)
-- Returns {removed, more due ('1'/'0'), {id, anchor, retention ms, id, anchor, ...}, now}: the
-- caller decides on the held ones by this script's clock.
-- Resend: a removal finds nothing the second time; a verdict applied twice is the same verdict.

local EXPIRY = KEYS[1]
local now = clock(ARGV[1])
local anchor_tag, limit = ARGV[3], tonumber(ARGV[4])
local removed = 0

-- The state, anchor tag and retention of a completed record of Vow's shape (nil otherwise);
-- `kind` is the key's TYPE when the caller has read it already.
local function completed(id, kind)
  local p = derive(EXPIRY, 'p:' .. id)
  if (kind or redis.call('TYPE', p)['ok']) ~= 'hash' then return nil end
  local f = redis.call('HMGET', p, 'state', 't:' .. anchor_tag, 'rn', 'tags')
  if f[1] == false or f[1] == 'PENDING' then return nil end
  if not f[2] and f[4] then  -- a record written before tags were fields: the msgpack blob
    local ok, tags = pcall(cmsgpack.unpack, f[4])
    if ok and type(tags) == 'table' and type(tags[anchor_tag]) == 'string' then f[2] = tags[anchor_tag] end
  end
  return f
end

for i = 5, #ARGV - 1, 2 do
  local id, keep = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', EXPIRY, id) and completed(id) then
    if keep == '0' then
      forget(EXPIRY, id)
      removed = removed + 1
    elseif keep == '-1' then
      redis.call('ZREM', EXPIRY, id)
    else
      redis.call('ZADD', EXPIRY, keep, id)
    end
  end
end

local held = {}
local due = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', ms(now), 'LIMIT', 0, limit + 1)
for i = 1, math.min(#due, limit) do
  local id = due[i]
  local kind = redis.call('TYPE', derive(EXPIRY, 'p:' .. id))['ok']
  local f = completed(id, kind)
  if kind == 'none' then
    forget(EXPIRY, id)  -- removed by other means: its index entries go too
  elseif f == nil then
    redis.call('ZREM', EXPIRY, id)  -- pending, or not a record of Vow's shape: never expired here
  else
    local anchor = f[2]
    if anchor and anchor ~= id and anchor ~= '' then
      held[#held + 1] = id
      held[#held + 1] = anchor
      held[#held + 1] = f[3] or ''
    else
      forget(EXPIRY, id)
      removed = removed + 1
    end
  end
end
local more = '0'
if #due > limit then more = '1' end
return {removed, more, held, ms(now)}
