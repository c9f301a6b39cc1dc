--[[
  Budget reservation: check and reserve in one step, so concurrent requests can never
  overshoot the cap (used + reserved + this request's worst case <= cap). The reservation
  also stores what the request is billed as if its log phase never settles it (a plugin
  server killed, a node lost, log timers dropped): the "estimated" ledger entry, written by
  the sweep of expired reservations (includes/budget-expiry.lua, run first here and alone by
  budget-sweep-4.lua) exactly once.

  KEYS[1]  the tenant's budget for the period: a hash
             used_tokens, used_cost, reserved_tokens, reserved_cost   (integers)
             r:<request id> = "<tokens> <cost>"                      (one per open reservation)
             e:<request id> = JSON {t, c, f}: tokens, cost and ledger fields it is billed
                              as when it expires unsettled           (one per open reservation)
  KEYS[2]  the period's open reservations: a sorted set, request id -> expiry (ms, server time)
  KEYS[3]  the period's settled request ids (a set; see budget-settle-4.lua)
  KEYS[4]  the tenant's ledger for the period (a stream; see budget-settle-4.lua)

  ARGV[1]  request id
  ARGV[2]  reservation TTL in ms (> 0): a reservation never settled expires, and is billed
  ARGV[3]  token cap (-1: none)
  ARGV[4]  cost cap, in the same unit as the costs (-1: none)
  ARGV[5]  TTL of the budget hash, settled set and ledger in ms (past the end of the period)
  ARGV[6]  the model the client asked for (ledger `model_asked`)
  ARGV[7]  prompt tokens counted by the tokenizer (the estimate billed, without headroom)
  ARGV[8]  completion tokens billed per unit reserved (the number of choices; 0: none)
  ARGV[9]  1: a streamed request, 0: not
  ARGV[10..] candidates, 11 values each, tried in order; the first that fits is reserved:
             base_tokens base_cost unit_tokens unit_cost min_units max_units soft_ratio
             model downgrade prompt_price completion_price
           worst case = base + units * unit; the largest units in [min_units, max_units]
           that fits is taken. soft_ratio < 1: the candidate is only eligible while the
           tenant's used + reserved is at most soft_ratio * cap (the downgrade threshold).
           model, downgrade: the ledger's `model` and `downgrade` of this candidate; the two
           prices (cost unit per token, fractional) bill the estimate on expiry exactly as
           the log phase's costOf does: ceil(prompt * prompt_price + completion * completion_price).

  Reply: {index, units, used_tokens, reserved_tokens, used_cost, reserved_cost, expired}
    index  1-based candidate reserved; 0 none fits (nothing reserved);
           -1 the request id already holds a reservation (nothing changed)
    the totals are after this call; expired: reservations settled by expiry in this call.

  Expired reservations are settled first, at most 100 a call.
]]
--- @include "<includes>/server-time"
--- @include "includes/budget-expiry"
local rid = ARGV[1]
local ttl = tonumber(ARGV[2])
local cap_t = tonumber(ARGV[3])
local cap_c = tonumber(ARGV[4])
local key_ttl = tonumber(ARGV[5])
local model_asked = ARGV[6]
local prompt = tonumber(ARGV[7])
local per_unit = tonumber(ARGV[8])
local stream = ARGV[9]
if not ttl or ttl <= 0 or not cap_t or not cap_c or not key_ttl or key_ttl <= 0 or rid == ''
    or not prompt or prompt < 0 or not per_unit or per_unit < 0
    or (stream ~= '0' and stream ~= '1') then
  return redis.error_reply('ERR budget-reserve: bad arguments')
end
if (#ARGV - 9) % 11 ~= 0 then
  return redis.error_reply('ERR budget-reserve: candidates come in groups of 11')
end

local now = server_time_ms()


local expired_n = settle_expired(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, 100, key_ttl)

local s = redis.call('HMGET', KEYS[1], 'used_tokens', 'used_cost', 'reserved_tokens', 'reserved_cost')
local used_t, used_c = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local res_t, res_c = tonumber(s[3]) or 0, tonumber(s[4]) or 0

if redis.call('HEXISTS', KEYS[1], 'r:' .. rid) == 1 then
  return { -1, 0, used_t, res_t, used_c, res_c, expired_n }
end

-- Room left in each dimension; math.huge when uncapped.
local room_t = cap_t >= 0 and (cap_t - used_t - res_t) or math.huge
local room_c = cap_c >= 0 and (cap_c - used_c - res_c) or math.huge

local function below_soft(ratio)
  if ratio >= 1 then return true end
  if cap_t >= 0 and used_t + res_t > ratio * cap_t then return false end
  if cap_c >= 0 and used_c + res_c > ratio * cap_c then return false end
  return true
end

-- Largest units in [lo, hi] with base + units * unit <= room, or nil.
local function fit(base, unit, lo, hi, room)
  if room == math.huge then return hi end
  if base + lo * unit > room then return nil end
  if unit <= 0 then return hi end
  return math.min(hi, math.floor((room - base) / unit))
end

-- Integers as digits: Lua's default number format turns 1e14 and above into "1e+14".
local function int(x) return string.format('%.0f', x) end

for i = 0, (#ARGV - 9) / 11 - 1 do
  local a = 10 + i * 11
  local bt, bc = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local ut, uc = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local lo, hi = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local soft = tonumber(ARGV[a + 6])
  if below_soft(soft) and lo <= hi then
    local ft = fit(bt, ut, lo, hi, room_t)
    local fc = ft and fit(bc, uc, lo, hi, room_c)
    if ft and fc then
      local units = math.min(ft, fc)
      local t = bt + units * ut
      local c = bc + units * uc
      local completion = units * per_unit
      local cost = math.ceil(prompt * tonumber(ARGV[a + 9]) + completion * tonumber(ARGV[a + 10]))
      -- The fields of token-meter's ledgerFields (ledger.ts), as the log phase writes an
      -- estimated entry; status 0: no response was seen.
      local bill = cjson.encode({
        t = int(prompt + completion),
        c = int(cost),
        f = {
          'ts', int(now), 'model_asked', model_asked, 'model', ARGV[a + 7],
          'prompt', int(prompt), 'completion', int(completion), 'cached', '0',
          'cost_nusd', int(cost), 'cache_hit', '0', 'estimated', '1',
          'estimate_basis', 'prompt=tokenizer;completion=bound',
          'downgrade', ARGV[a + 8], 'stream', stream, 'status', '0', 'settled_by', 'expiry',
        },
      })
      redis.call('HINCRBY', KEYS[1], 'reserved_tokens', t)
      redis.call('HINCRBY', KEYS[1], 'reserved_cost', c)
      redis.call('HSET', KEYS[1], 'r:' .. rid, t .. ' ' .. c, 'e:' .. rid, bill)
      redis.call('ZADD', KEYS[2], now + ttl, rid)
      redis.call('PEXPIRE', KEYS[1], key_ttl)
      redis.call('PEXPIRE', KEYS[2], key_ttl)
      return { i + 1, units, used_t, res_t + t, used_c, res_c + c, expired_n }
    end
  end
end
return { 0, 0, used_t, res_t, used_c, res_c, expired_n }
