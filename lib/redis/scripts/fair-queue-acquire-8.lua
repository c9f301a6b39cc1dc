--[[
  The fair queue (includes/fair-queue.lua), acquire: a request enters its class's queue on
  its first call, renews its heartbeat and polls on the later ones, and is admitted when it is
  the head and capacity allows; a seat granted while its waiter was away (a claim) becomes a
  full lease.

  KEYS[1..8]  the queue's: waiting, seats, starts, alive, tags, state, flex waiting, flex tags
  ARGV[1..8]  ticket id, most seats, upstream tokens burst, tokens refill per second, seat
              lease ms, heartbeat ms, grant channel, flex reserve
              (what each key holds and each argument means: includes/fair-queue.lua)
  ARGV[9]     tenant id
  ARGV[10]    weight (> 0)
  ARGV[11]    width (tokens, >= 1)
  ARGV[12]    class: `urgent` or `flex`

  Reply: {granted, position, seatsInUse, waiting, retryHintMs, tags}
    granted      1 the ticket holds a seat now (proceed), 0 it waits
    position     0-based rank among the waiting of its class (0 when granted)
    seatsInUse   seats held after this call
    waiting      tickets waiting after this call (both classes)
    retryHintMs  when waiting on tokens: ms until the head's tokens are there; else 0
    tags         "<start>:<finish>" given to a ticket on entering the queue ('' on a poll)
]]
--- @include "includes/fair-queue"

local q, bad = fq_open({
  waiting = KEYS[1], seats = KEYS[2], starts = KEYS[3], alive = KEYS[4],
  tags = KEYS[5], state = KEYS[6], fwaiting = KEYS[7], ftags = KEYS[8],
}, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if not q then return bad end

local ticket = q.ticket
local tenant = ARGV[9]
local weight = tonumber(ARGV[10])
local width = tonumber(ARGV[11])
local class = ARGV[12]
if tenant == nil or tenant == '' or not weight or weight <= 0 or not width or width < 1
  or (class ~= 'urgent' and class ~= 'flex') then
  return redis.error_reply('ERR fair-queue acquire: bad tenant, weight, width or class')
end
local flex = class == 'flex'
local k_wait = flex and q.fwaiting or q.waiting
if redis.call('ZSCORE', q.seats, ticket) then
  -- Granted while this waiter was away: the claim becomes a full lease.
  redis.call('ZADD', q.seats, q.now + q.lease_ms, ticket)
  fq_expire(q)
  return { 1, 0, redis.call('ZCARD', q.seats), fq_waiting_count(q), 0, '' }
end
local tags = ''
if not redis.call('ZSCORE', k_wait, ticket) then
  local k_tags = flex and q.ftags or q.tags
  local last = tonumber(redis.call('ZSCORE', k_tags, tenant)) or 0
  local start = math.max(flex and q.fvtime or q.vtime, last)
  local finish = start + width / weight
  redis.call('ZADD', k_tags, string.format('%.17g', finish), tenant)
  redis.call('ZADD', k_wait, string.format('%.17g', finish), ticket)
  redis.call('HSET', q.starts, ticket, string.format('%.17g', start) .. ':' .. width)
  tags = string.format('%.17g', start) .. ':' .. string.format('%.17g', finish)
end
redis.call('ZADD', q.alive, q.now + q.heartbeat_ms, ticket)
local granted, hint, seats = fq_grant(q, ticket)
fq_announce(q, granted, ticket)
fq_expire(q)
local waiting = fq_waiting_count(q)
for _, id in ipairs(granted) do
  if id == ticket then return { 1, 0, seats, waiting, 0, tags } end
end
return { 0, redis.call('ZRANK', k_wait, ticket) or 0, seats, waiting, hint, tags }
