--[[
  Settles one request exactly once: releases its reservation (if still open), adds what it
  really used, marks the request id settled and appends its ledger entry — all or nothing,
  so a replay (a spooled entry sent again, a duplicated log event) changes nothing.

  KEYS[1]  the tenant's budget hash for the period (see budget-reserve-4.lua)
  KEYS[2]  the period's open reservations (sorted set)
  KEYS[3]  the period's settled request ids (a set)
  KEYS[4]  the tenant's ledger for the period (a stream, append-only)

  ARGV[1]  request id
  ARGV[2]  tokens used (integer >= 0)
  ARGV[3]  cost (integer >= 0, the budget's unit)
  ARGV[4]  TTL in ms of the budget, settled set and ledger (past the end of the period + retention)
  ARGV[5]  1: append the ledger entry, 0: release only (an error or refusal: nothing billed)
  ARGV[6..] the ledger entry, field value pairs (the request id is added as field `rid`)

  Reply: {settled, used_tokens, used_cost}
    settled  1 settled now; 2 settled before by the sweep of expired reservations, which
             billed it as estimated (settled_by = expiry), and corrected now: its entry is
             replaced by this one (or removed, for a release) and the budget given the
             difference, once; 0 this request id was settled before (nothing changed): by an
             earlier log or spool replay, or a correction already made.
  The correction is what makes an outage longer than the reservation TTL come out exact: the
  sweep bills the estimate when Redis is back, then the spooled exact usage replaces it.
]]
local rid = ARGV[1]
local tokens = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if rid == '' or not tokens or tokens < 0 or not cost or cost < 0 or not ttl or ttl <= 0 then
  return redis.error_reply('ERR budget-settle: bad arguments')
end
if (#ARGV - 5) % 2 ~= 0 then
  return redis.error_reply('ERR budget-settle: ledger fields come in pairs')
end

if redis.call('SADD', KEYS[3], rid) == 0 then
  local billed = redis.call('HGET', KEYS[1], 'x:' .. rid)
  if billed then
    -- Billed at expiry as estimated; this is what really happened: it replaces the estimate.
    local id, t, c = string.match(billed, '^(%S+) (%d+) (%d+)$')
    redis.call('HDEL', KEYS[1], 'x:' .. rid)
    redis.call('XDEL', KEYS[4], id)
    local billing = ARGV[5] == '1'
    local used_t = redis.call('HINCRBY', KEYS[1], 'used_tokens', (billing and tokens or 0) - tonumber(t))
    local used_c = redis.call('HINCRBY', KEYS[1], 'used_cost', (billing and cost or 0) - tonumber(c))
    if billing then
      local entry = { 'rid', rid }
      for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
      entry[#entry + 1] = 'replaced'
      entry[#entry + 1] = 'expiry'
      redis.call('XADD', KEYS[4], '*', unpack(entry))
    end
    return { 2, used_t, used_c }
  end
  local s = redis.call('HMGET', KEYS[1], 'used_tokens', 'used_cost')
  return { 0, tonumber(s[1]) or 0, tonumber(s[2]) or 0 }
end
redis.call('PEXPIRE', KEYS[3], ttl)

local held = redis.call('HGET', KEYS[1], 'r:' .. rid)
if held then
  local t, c = string.match(held, '^(%d+) (%d+)$')
  -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
  redis.call('HINCRBY', KEYS[1], 'reserved_tokens', 0 - tonumber(t))
  redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - tonumber(c))
  redis.call('HDEL', KEYS[1], 'r:' .. rid)
end
-- Settled here: what the reservation would have been billed as on expiry goes with it, so
-- the sweep finds nothing of this request id.
redis.call('HDEL', KEYS[1], 'e:' .. rid)
redis.call('ZREM', KEYS[2], rid)

local used_t = redis.call('HINCRBY', KEYS[1], 'used_tokens', tokens)
local used_c = redis.call('HINCRBY', KEYS[1], 'used_cost', cost)
redis.call('PEXPIRE', KEYS[1], ttl)

if ARGV[5] == '1' then
  local entry = { 'rid', rid }
  for i = 6, #ARGV do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', KEYS[4], '*', unpack(entry))
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return { 1, used_t, used_c }
