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
--- @include "<includes>/server-time"
--- @include "<includes>/bucket"

local tok_cap = tonumber(ARGV[2])
local tok_rate = tonumber(ARGV[3])
local delta = tonumber(ARGV[4])
if not tok_cap or not tok_rate or not delta or (tok_cap > 0 and tok_rate <= 0) then
  return redis.error_reply('ERR tenant-settle: bad arguments')
end

local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if tok_cap <= 0 then return { removed, -1 } end

local now = server_time_ms()
local tokens = bucket_level(KEYS[1], tok_cap, tok_rate, now)
if delta ~= 0 then
  tokens = math.max(-tok_cap, math.min(tok_cap, tokens - delta))
  bucket_save(KEYS[1], tok_cap, tok_rate, tokens, now)
end
return { removed, math.floor(tokens) }
