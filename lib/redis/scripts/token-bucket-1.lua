--[[
  Token bucket, refilled continuously: refill by the time elapsed since the last call, then
  take `cost` tokens if that many are there. All or nothing: a refused call takes nothing.

  KEYS[1]  the bucket: a hash {tokens = <float>, ts = <ms of last update>}
  ARGV[1]  capacity: most tokens the bucket holds (> 0); a new bucket starts full
  ARGV[2]  refill rate: tokens added per second (> 0)
  ARGV[3]  cost: tokens to take (>= 0; 0 only reads the state)

  Reply: {allowed, remaining, retryAfterMs}
    allowed       1 if the tokens were taken, else 0
    remaining     whole tokens left after this call
    retryAfterMs  0 if allowed; else ms until `cost` tokens will be there;
                  -1 if cost > capacity (it will never be allowed)

  Time comes from the Redis server (TIME), so every gateway node shares one clock. The key
  expires once it would have refilled completely: an absent bucket is a full one.
]]
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
if not capacity or not rate or not cost or capacity <= 0 or rate <= 0 or cost < 0 then
  return redis.error_reply('ERR token-bucket: capacity and rate must be > 0, cost >= 0')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
else
  -- max(0, ...): TIME may step back after a failover to a replica with a slower clock.
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
end

local allowed = 0
local retry_after = 0
if cost > capacity then
  retry_after = -1
elseif tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = math.ceil((cost - tokens) * 1000 / rate)
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) * 1000 / rate) + 1000)

return { allowed, math.floor(tokens), retry_after }
