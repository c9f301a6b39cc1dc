--[[
  Records (or refreshes) one object the provider keeps for a tenant: the tenant's key for it,
  with the object as last seen, and its place in the tenant's index of that kind (what a list
  answers). Both expire with the registry's TTL; the index also drops ids older than the TTL
  and keeps at most ARGV[5] ids (the oldest go first), so nothing here is held forever.

  KEYS[1]  the object's key (Keyspace.providerObject)
  KEYS[2]  the tenant's index of that kind (sorted set id -> creation ms)

  ARGV[1]  the value (JSON)
  ARGV[2]  TTL in ms
  ARGV[3]  now, ms (the creation time of a new object)
  ARGV[4]  the provider's id
  ARGV[5]  the most ids the index keeps

  Reply: 1 recorded now, 0 refreshed (it was recorded before: its creation time is kept)
]]
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cap = tonumber(ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
local added = redis.call('ZADD', KEYS[2], 'NX', now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - ttl))
local n = redis.call('ZCARD', KEYS[2])
if n > cap then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - cap - 1) end
redis.call('PEXPIRE', KEYS[2], ttl)
return added
