--[[
  Budget reservation: check and reserve in one step, so concurrent requests can never
  overshoot the cap (used + reserved + this request's worst case <= cap).

  KEYS[1]  the tenant's budget for the period: a hash
             used_tokens, used_cost, reserved_tokens, reserved_cost   (integers)
             r:<request id> = "<tokens> <cost>"                      (one per open reservation)
  KEYS[2]  the period's open reservations: a sorted set, request id -> expiry (ms, server time)

  ARGV[1]  request id
  ARGV[2]  reservation TTL in ms (> 0): a reservation never settled expires by itself
  ARGV[3]  token cap (-1: none)
  ARGV[4]  cost cap, in the same unit as the costs (-1: none)
  ARGV[5]  TTL of the budget hash in ms (past the end of the period)
  ARGV[6..] candidates, 7 values each, tried in order; the first that fits is reserved:
             base_tokens base_cost unit_tokens unit_cost min_units max_units soft_ratio
           worst case = base + units * unit; the largest units in [min_units, max_units]
           that fits is taken. soft_ratio < 1: the candidate is only eligible while the
           tenant's used + reserved is at most soft_ratio * cap (the downgrade threshold).

  Reply: {index, units, used_tokens, reserved_tokens, used_cost, reserved_cost}
    index  1-based candidate reserved; 0 none fits (nothing reserved);
           -1 the request id already holds a reservation (nothing changed)
    the totals are after this call.

  Expired reservations (a lost log event, a dead node) are swept first, at most 100 a call.
]]
local rid = ARGV[1]
local ttl = tonumber(ARGV[2])
local cap_t = tonumber(ARGV[3])
local cap_c = tonumber(ARGV[4])
local key_ttl = tonumber(ARGV[5])
if not ttl or ttl <= 0 or not cap_t or not cap_c or not key_ttl or key_ttl <= 0 or rid == '' then
  return redis.error_reply('ERR budget-reserve: bad arguments')
end
if (#ARGV - 5) % 7 ~= 0 then
  return redis.error_reply('ERR budget-reserve: candidates come in groups of 7')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, old in ipairs(expired) do
  local held = redis.call('HGET', KEYS[1], 'r:' .. old)
  if held then
    local t, c = string.match(held, '^(%d+) (%d+)$')
    -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
    -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
  redis.call('HINCRBY', KEYS[1], 'reserved_tokens', 0 - tonumber(t))
    redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - tonumber(c))
    redis.call('HDEL', KEYS[1], 'r:' .. old)
  end
  redis.call('ZREM', KEYS[2], old)
end

local s = redis.call('HMGET', KEYS[1], 'used_tokens', 'used_cost', 'reserved_tokens', 'reserved_cost')
local used_t, used_c = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local res_t, res_c = tonumber(s[3]) or 0, tonumber(s[4]) or 0

if redis.call('HEXISTS', KEYS[1], 'r:' .. rid) == 1 then
  return { -1, 0, used_t, res_t, used_c, res_c }
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

for i = 0, (#ARGV - 5) / 7 - 1 do
  local a = 6 + i * 7
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
      redis.call('HINCRBY', KEYS[1], 'reserved_tokens', t)
      redis.call('HINCRBY', KEYS[1], 'reserved_cost', c)
      redis.call('HSET', KEYS[1], 'r:' .. rid, t .. ' ' .. c)
      redis.call('ZADD', KEYS[2], now + ttl, rid)
      redis.call('PEXPIRE', KEYS[1], key_ttl)
      redis.call('PEXPIRE', KEYS[2], key_ttl)
      return { i + 1, units, used_t, res_t + t, used_c, res_c + c }
    end
  end
end
return { 0, 0, used_t, res_t, used_c, res_c }
