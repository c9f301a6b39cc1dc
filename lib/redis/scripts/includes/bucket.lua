--[[
  A token bucket refilled continuously, kept in a hash {tokens = <float>, ts = <ms of the last
  update>} (other fields of the hash are left alone: the fair queue keeps its virtual times
  beside them). An absent or unreadable state is a full bucket, so a bucket key may expire
  once it would have refilled completely.
]]

-- The bucket at `key` refilled to `now` (ms): its level, at most `cap`.
local function bucket_level(key, cap, rate, now)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then return cap end
  -- max(0, ...): TIME may step back after a failover to a replica with a slower clock.
  return math.min(cap, tokens + math.max(0, now - ts) * rate / 1000)
end

-- Writes the level (full precision: a bucket refilled by fractions must not lose them).
local function bucket_set(key, tokens, now)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', now)
end

-- Writes the level and lets the key expire a second after the bucket would be full again.
local function bucket_save(key, cap, rate, tokens, now)
  bucket_set(key, tokens, now)
  redis.call('PEXPIRE', key, math.ceil((cap - tokens) * 1000 / rate) + 1000)
end
