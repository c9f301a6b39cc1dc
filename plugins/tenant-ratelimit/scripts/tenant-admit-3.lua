--[[
  One admission decision for one tenant, all or nothing: requests per minute (token bucket
  with burst), LLM tokens per minute (token bucket charged with the request's token
  estimate) and a concurrency cap (in-flight leases that expire by themselves). Either every
  enabled limit has room and all are taken, or nothing is taken.

  KEYS[1]  requests bucket: hash {tokens, ts}
  KEYS[2]  LLM-tokens bucket: hash {tokens, ts}
  KEYS[3]  in-flight leases: sorted set lease id -> expiry ms
  ARGV[1]  requests burst (bucket capacity); 0 disables the requests limit
  ARGV[2]  requests refill per second
  ARGV[3]  tokens burst (bucket capacity); 0 disables the tokens limit
  ARGV[4]  tokens refill per second
  ARGV[5]  token cost of this request (>= 0; the caller caps it at the tokens burst)
  ARGV[6]  most leases in flight; 0 disables the concurrency cap
  ARGV[7]  lease id (unique per request)
  ARGV[8]  lease time to live, ms (> 0)

  Reply: {allowed, reason, retryAfterMs, requestsLeft, tokensLeft, inFlight,
          requestsResetMs, tokensResetMs}
    allowed          1 taken, 0 refused
    reason           0 none, 1 requests, 2 tokens, 3 concurrency (the first limit that refused)
    retryAfterMs     0 when allowed; else the longest wait among the limits that refused
    requestsLeft     whole requests left in the bucket (-1 when the limit is off)
    tokensLeft       whole tokens left (-1 when off; may be negative after a usage charge)
    inFlight         the tenant's leases in flight after this call
    requestsResetMs  ms until the requests bucket is full again (0 when off)
    tokensResetMs    ms until the tokens bucket is full again (0 when off)

  Time comes from the Redis server (TIME): every gateway node shares one clock.
]]
--- @include "<includes>/server-time"
--- @include "<includes>/bucket"
--- @include "<includes>/expire-with-last"

local req_cap = tonumber(ARGV[1])
local req_rate = tonumber(ARGV[2])
local tok_cap = tonumber(ARGV[3])
local tok_rate = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local max_leases = tonumber(ARGV[6])
local lease_id = ARGV[7]
local lease_ttl = tonumber(ARGV[8])
if not req_cap or not req_rate or not tok_cap or not tok_rate or not cost or not max_leases
  or not lease_ttl or lease_ttl <= 0 or cost < 0 or lease_id == nil or lease_id == '' then
  return redis.error_reply('ERR tenant-admit: bad arguments')
end
if (req_cap > 0 and req_rate <= 0) or (tok_cap > 0 and tok_rate <= 0) then
  return redis.error_reply('ERR tenant-admit: an enabled bucket needs a refill rate > 0')
end

local now = server_time_ms()

-- A bucket refilled to now: its level, or nil when the limit is off.
local function level(key, cap, rate)
  if cap <= 0 then return nil end
  return bucket_level(key, cap, rate, now)
end

local function reset_ms(cap, rate, tokens)
  if tokens == nil then return 0 end
  return math.ceil((cap - tokens) * 1000 / rate)
end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[3])

local req = level(KEYS[1], req_cap, req_rate)
local tok = level(KEYS[2], tok_cap, tok_rate)
if tok ~= nil and cost > tok_cap then cost = tok_cap end

local reason = 0
local retry = 0
if req ~= nil and req < 1 then
  reason = 1
  retry = math.max(retry, math.ceil((1 - req) * 1000 / req_rate))
end
if tok ~= nil and tok < cost then
  if reason == 0 then reason = 2 end
  retry = math.max(retry, math.ceil((cost - tok) * 1000 / tok_rate))
end
if max_leases > 0 and in_flight >= max_leases then
  if reason == 0 then reason = 3 end
  -- The earliest a lease can end on its own; most end far sooner, in `log`.
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  local wait = 1000
  if first[2] then wait = math.min(1000, math.max(1, tonumber(first[2]) - now)) end
  retry = math.max(retry, wait)
end

local allowed = 0
if reason == 0 then
  allowed = 1
  if req ~= nil then req = req - 1 end
  if tok ~= nil then tok = tok - cost end
  redis.call('ZADD', KEYS[3], now + lease_ttl, lease_id)
  in_flight = in_flight + 1
end
-- Refused calls store the refilled level too (it is the same bucket, only later).
if req ~= nil then bucket_save(KEYS[1], req_cap, req_rate, req, now) end
if tok ~= nil then bucket_save(KEYS[2], tok_cap, tok_rate, tok, now) end
if in_flight > 0 then expire_with_last(KEYS[3]) end

local req_left = -1
if req ~= nil then req_left = math.floor(req) end
local tok_left = -1
if tok ~= nil then tok_left = math.floor(tok) end
return { allowed, reason, retry, req_left, tok_left, in_flight,
  reset_ms(req_cap, req_rate, req), reset_ms(tok_cap, tok_rate, tok) }
