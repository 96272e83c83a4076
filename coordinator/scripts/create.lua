#!lua
-- create.lua — create a promise (or answer for an existing one), optionally in one step:
-- queue its invoke task, register a callback or a subscription on it, or write it completed
-- (a recorded workflow step).
--
-- KEYS[1..8]  the promise keys (see _lib.lua)
-- KEYS[9]     vow:{T}:groups   (written only with an invoke message)
-- The invoke task stream vow:{T}:q:<group> is derive()d from KEYS[1].
-- ARGV[1]  now                                        ARGV[2]  request id
-- ARGV[3]  promise id                                 ARGV[4]  timeout, epoch ms
-- ARGV[5]  create idempotency key ('' = none)         ARGV[6]  strict ('1'/'0')
-- ARGV[7]  param headers (msgpack)                    ARGV[8]  param data present ('1'/'0')
-- ARGV[9]  param data                                 ARGV[10] number of tags, n
-- ARGV[11] timer tag set ('1'/'0')
-- ARGV[12] completed state for a recorded step ('' = create PENDING)
-- ARGV[13] value headers (msgpack)  ARGV[14] value data present  ARGV[15] value data
-- ARGV[16] complete idempotency key ('' = none)
-- ARGV[17] invoke logic group ('' = none)             ARGV[18] invoke task message
-- ARGV[19] callback root id ('' = none)               ARGV[20] callback value "<group>\n<message>"
-- ARGV[21] subscription listener id ('' = none)
-- ARGV[22] adopt ('1': register the callback/subscription on an existing pending promise even
--          when the create itself is refused)
-- ARGV[23] allow past ('1': a timeout <= now creates the promise already timed out — a timer or
--          wait whose deadline passed while the request travelled; '0': answer 'past')
-- ARGV[24] retention, ms after completion ('' = keep for ever)
-- ARGV[25..24+2n] the tags, name and value pairs: each is its own field 't:<name>' (one blob of
--          them would often pass the 64 bytes a hash value may have for Redis to keep the record
--          a listpack; that costs about 650 bytes a record)
-- Returns {status, record fields}: status is created | dedup | exists | past (timeout <= now);
-- except that a record written just now as requested returns {'fresh', created_on} (the caller
-- has every other field already; this keeps the reply small).
-- Resend: the record's create request id (rqc) is this request's: answered as the first run was
-- ('fresh' with the same created_on), whatever happened to the promise since.

local K = promise_keys(1)
local now = clock(ARGV[1])
local rid, id = ARGV[2], ARGV[3]
local ikey, strict = ARGV[5], ARGV[6] == '1'
local completed_state = ARGV[12]

local function register()
  if ARGV[19] ~= '' then redis.call('HSET', K.cb, ARGV[19], ARGV[20]) end
  if ARGV[21] ~= '' then redis.call('HSET', K.sub, ARGV[21], '1') end
end

if redis.call('EXISTS', K.p) == 1 then
  timeout_if_due(K, id, now)
  local f = redis.call('HMGET', K.p, 'state', 'ikc', 'rqc', 'co')
  local status = 'exists'
  if f[3] == rid then
    -- A resend of the create that wrote this record: answer as the first run did, even if the
    -- promise has moved on since (its first answer was the record as written, 'fresh', unless
    -- its timeout had already passed then).
    if completed_state ~= '' or tonumber(ARGV[4]) > tonumber(f[4]) then return {'fresh', f[4]} end
    status = 'created'
  elseif ikey ~= '' and f[2] == ikey and ((not strict) or f[1] == 'PENDING') then
    status = 'dedup'
  end
  if f[1] == 'PENDING' and (status ~= 'exists' or ARGV[22] == '1') then register() end
  return {status, record(K)}
end

local timeout = tonumber(ARGV[4])
local past = completed_state == '' and timeout <= now
if past and ARGV[23] ~= '1' then return {'past', {}} end

redis.call('HSET', K.p, 'id', id, 'state', 'PENDING', 'to', ARGV[4], 'ph', ARGV[7], 'timer', ARGV[11],
  'co', ms(now), 'rqc', rid)
for i = 25, 24 + 2 * tonumber(ARGV[10]), 2 do redis.call('HSET', K.p, 't:' .. ARGV[i], ARGV[i + 1]) end
if ARGV[8] == '1' then redis.call('HSET', K.p, 'pd', ARGV[9]) end
if ikey ~= '' then redis.call('HSET', K.p, 'ikc', ikey) end
if ARGV[24] ~= '' then redis.call('HSET', K.p, 'rn', ARGV[24]) end
redis.call('ZADD', K.all, ms(now), id)

if completed_state ~= '' then
  write_value(K, completed_state, now, ARGV[13], ARGV[14], ARGV[15], ARGV[16], rid)
  redis.call('ZADD', family_key(K, completed_state), ms(now), id)
  expire_later(K, id, now)
  return {'fresh', ms(now)}
end

redis.call('ZADD', K.pending, ms(now), id)
redis.call('ZADD', K.timeouts, ARGV[4], id)
if past then
  timeout_if_due(K, id, now)
  return {'created', record(K)}
end
if ARGV[17] ~= '' then
  redis.call('XADD', derive(K.p, 'q:' .. ARGV[17]), '*', 'm', ARGV[18])
  redis.call('SADD', KEYS[9], ARGV[17])
end
register()
return {'fresh', ms(now)}
