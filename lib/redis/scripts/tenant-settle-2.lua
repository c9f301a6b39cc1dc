--[[
  The end of one admitted request of a tenant: its in-flight lease ends, and the tokens it
  was charged (its estimate) are corrected to what the upstream really used: a refund when
  it used less, an extra charge when it used more. The bucket may go below zero (down to
  minus its burst): the tenant then waits longer for its next request.

  KEYS[1]  LLM-tokens bucket: hash {tokens, ts}
  KEYS[2]  in-flight leases: sorted set lease id -> expiry ms
  ARGV[1]  lease id
  ARGV[2]  tokens burst (bucket capacity); 0 when the tokens limit is off
  ARGV[3]  tokens refill per second
  ARGV[4]  correction: actual tokens - charged tokens (negative refunds)

  Reply: {leaseRemoved, tokensLeft}
    leaseRemoved  1 if the lease was still there (0: it had expired, or was released before)
    tokensLeft    whole tokens left after the correction (-1 when the limit is off)
]]
local tok_cap = tonumber(ARGV[2])
local tok_rate = tonumber(ARGV[3])
local delta = tonumber(ARGV[4])
if not tok_cap or not tok_rate or not delta or (tok_cap > 0 and tok_rate <= 0) then
  return redis.error_reply('ERR tenant-settle: bad arguments')
end

local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if tok_cap <= 0 then return { removed, -1 } end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = tok_cap
else
  tokens = math.min(tok_cap, tokens + math.max(0, now - ts) * tok_rate / 1000)
end
if delta ~= 0 then
  tokens = math.max(-tok_cap, math.min(tok_cap, tokens - delta))
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((tok_cap - tokens) * 1000 / tok_rate) + 1000)
end
return { removed, math.floor(tokens) }
