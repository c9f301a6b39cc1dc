--[[
  Records one semantic-cache row of a tenant and evicts what is past its life or over the
  tenant's bound, in one round trip (plugins/tenant-cache/semantic.ts).

  KEYS[1]  the tenant's semantic index: a sorted set {Milvus row id -> expiry ms}
  ARGV[1]  the new row's id (a Milvus Int64 primary key, as a decimal string)
  ARGV[2]  the new row's expiry, ms since the epoch
  ARGV[3]  now, ms since the epoch (the gateway's clock, the one the expiry was computed on)
  ARGV[4]  most rows the tenant may hold (>= 1)

  Reply: the ids removed from the index (expired, then the oldest-expiring beyond the bound);
         the caller deletes them from Milvus. The index itself expires with its last row.
]]
--- @include "<includes>/expire-with-last"

local key = KEYS[1]
local expires = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
redis.call('ZADD', key, expires, ARGV[1])
local evicted = redis.call('ZRANGEBYSCORE', key, '-inf', now)
if #evicted > 0 then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end
local over = redis.call('ZCARD', key) - max
if over > 0 then
  local oldest = redis.call('ZRANGE', key, 0, over - 1)
  redis.call('ZREMRANGEBYRANK', key, 0, over - 1)
  for _, id in ipairs(oldest) do
    evicted[#evicted + 1] = id
  end
end
expire_with_last(key)
return evicted
