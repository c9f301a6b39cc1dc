--[[
  A sorted set scored by expiry (ms since the epoch) lives as long as its last member, and a
  second more: nothing is held forever, and nothing expires while a member is still alive.
]]
local function expire_with_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', key, math.floor(tonumber(last[2])) + 1000)
  end
end
