--[[
  The Redis server's clock, in ms since the epoch. Scripts read time here rather than take it
  from the caller: every gateway node then shares one clock, and a node with a skewed clock
  cannot refill a bucket early or keep a lease alive.
]]
local function server_time_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
