#!lua
-- settle.lua — commit a batch of finished executions (a group commit): for each, complete the
-- driven promise (firing its callbacks and subscriptions), end the execution record, and
-- acknowledge + delete the task's stream entry when the caller passes it. Fenced per execution:
-- a holder of a stale counter changes nothing of that one.
--
-- KEYS, eleven per execution i (base b = 11(i-1)):
--   KEYS[b+1..b+8]  the promise keys of the driven promise (see _lib.lua)
--   KEYS[b+9]       vow:{T}:x:<id>   KEYS[b+10] vow:{T}:leases
--   KEYS[b+11]      vow:{T}:q:<group> holding the task entry; any key of the call's slot when
--                   the entry id is '' (on a cluster, an entry of another partition: the caller
--                   acknowledges it itself)
-- On a cluster every key of one call is in one partition (the caller batches per partition).
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer group
-- ARGV[4..11] of execution i, at a = 8(i-1): ARGV[a+4] promise id   ARGV[a+5] fencing counter
--   ('0': a first delivery run without a lease, see below)
--   ARGV[a+6] state: RESOLVED | REJECTED   ARGV[a+7] value headers (msgpack)
--   ARGV[a+8] value data present ('1'/'0')   ARGV[a+9] value data   ARGV[a+10] entry id ('' = none)
--   ARGV[a+11] counter '0' only: the param data the function ran with (from the task message)
-- Returns, per execution: 'ok' | 'fenced' (the caller needs no record back: it is the one that
-- just wrote it); and for counter '0' also 'done' (the promise was completed meanwhile: the
-- entry is acknowledged, the result dropped), 'gone' (no such promise: nothing changed), 'retry'
-- (the promise's param is not what ran: nothing changed; claim and run it the usual way).
-- Counter '0' (no lease was taken): refused as 'fenced' while another worker holds a live lease
-- on the promise (it took the task over and drives it); otherwise it commits as a lease holder
-- would, and ends any lapsed lease (its holder's late commit is then fenced).
-- Resend: the record's completion request id (rqv) is this request's ("<request id>:<i>"):
-- answered 'ok'.

local now = clock(ARGV[1])
local group = ARGV[3]

-- A first delivery run without a lease: may it commit? nil if so, else its answer.
local function unleased(K, X, id, rid, ran_with)
  if redis.call('EXISTS', K.p) == 0 then return 'gone' end
  local f = redis.call('HMGET', K.p, 'rqv', 'pd')
  if f[1] == rid then return 'ok' end
  if timeout_if_due(K, id, now) or redis.call('HGET', K.p, 'state') ~= 'PENDING' then return 'done' end
  if f[2] ~= ran_with then return 'retry' end
  local x = redis.call('HMGET', X, 'o', 'l')
  if x[1] and tonumber(x[2]) and tonumber(x[2]) > now then return 'fenced' end
  return nil
end

local function settle(base, a, rid)
  local K = promise_keys(base + 1)
  local X, LEASES = KEYS[base + 9], KEYS[base + 10]
  local id = ARGV[a + 4]
  local pending
  if ARGV[a + 5] == '0' then
    local refused = unleased(K, X, id, rid, ARGV[a + 11])
    if refused == 'done' and ARGV[a + 10] ~= '' then ack_entry(KEYS[base + 11], group, ARGV[a + 10]) end
    if refused then return refused end
    pending = true  -- (unleased() found it so)
  elseif not holds(X, ARGV[a + 5]) then
    if redis.call('HGET', K.p, 'rqv') == rid then return 'ok' end
    return 'fenced'
  else
    pending = redis.call('EXISTS', K.p) == 1 and not timeout_if_due(K, id, now)
      and redis.call('HGET', K.p, 'state') == 'PENDING'
  end
  if pending then
    write_value(K, ARGV[a + 6], now, ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], '', rid)
    leave_pending(K, id, ARGV[a + 6])
  end
  redis.call('DEL', X)
  redis.call('ZREM', LEASES, id)
  if ARGV[a + 10] ~= '' then ack_entry(KEYS[base + 11], group, ARGV[a + 10]) end
  return 'ok'
end

local out = {}
for i = 1, #KEYS / 11 do
  out[i] = settle(11 * (i - 1), 8 * (i - 1), ARGV[2] .. ':' .. i)
end
return out
