--[[
  Weighted fair queuing of one shared upstream, for the whole cluster: every gateway node
  runs the fair-queue scripts (fair-queue-acquire-8, -claim-8, -release-8, -cancel-8) against
  the same keys, so they schedule as one. This include is what the four operations share: the
  common arguments, housekeeping, admission of the heads (`fq_grant`) and the keys' expiry.

  Start-time fair queuing: a request of tenant t with width w (its token estimate) and
  weight W gets start = max(V, last finish of t) and finish = start + w / W. Waiting
  requests are admitted in order of finish tag (so a tenant's own requests stay FIFO, and a
  tenant with 10,000 waiting requests is interleaved with one that has a single one); V, the
  virtual time, is the largest start tag admitted so far. Work-conserving: whenever a seat
  (and, with a tokens-per-minute capacity, enough tokens) is free, the head is admitted at
  once, so an idle queue adds no wait.

  Two classes. `urgent` requests (the default) and `flex` requests (non-urgent work, e.g.
  OpenAI's service_tier "flex") wait in separate queues, each with its own virtual time and
  per-tenant tags, so each class is weighted-fair across tenants on its own. A flex request
  is admitted only when no urgent request waits (any tenant's, its own tenant's included: the
  tenant's urgent work overtakes its flex work) and fewer than `max seats - flex reserve`
  seats are busy: the reserve stays free for urgent arrivals, so idle capacity is what flex
  work gets. Flex never takes an urgent request's place; an urgent request never waits for a
  flex one that has not started.

  Nothing is held forever: a seat carries a lease that expires; a waiting ticket carries a
  heartbeat that its waiter renews on every poll; a seat granted to a waiter that was not
  there to see it is a short claim (the heartbeat window), made a full lease only by the
  claim operation.

  Every fair-queue script takes the same 8 keys, in this order (FairQueueKeys.all):
    KEYS[1]  waiting: sorted set ticket -> finish tag (urgent class)
    KEYS[2]  seats: sorted set ticket -> lease expiry ms
    KEYS[3]  starts: hash ticket -> "<start tag>:<width>" of a waiting ticket
    KEYS[4]  alive: sorted set ticket -> heartbeat expiry ms of a waiting ticket
    KEYS[5]  tags: sorted set tenant -> finish tag of its last urgent request (and the cancel
             notes, `<tenant>:<start>` -> finish of a cancelled request)
    KEYS[6]  state: hash {vtime, fvtime, tokens, ts}
    KEYS[7]  flex waiting: sorted set ticket -> finish tag (flex class)
    KEYS[8]  flex tags: sorted set tenant -> finish tag of its last flex request (and notes)
  and the same first 8 arguments, which it hands to fq_open:
    ARGV[1]  ticket id (unique per request)
    ARGV[2]  most seats (requests in flight upstream); 0 = no concurrency capacity
    ARGV[3]  upstream tokens burst; 0 = no tokens-per-minute capacity
    ARGV[4]  upstream tokens refill per second
    ARGV[5]  seat lease ms
    ARGV[6]  heartbeat ms (a waiter that does not poll within it leaves the queue; also the
             claim window of a seat granted while its waiter was away)
    ARGV[7]  pub/sub channel told the ids of tickets granted for other waiters
    ARGV[8]  flex reserve: seats a flex request leaves free for urgent ones (0 = none)
  The queue `q` that fq_open returns holds the keys by name (waiting, seats, starts, alive,
  tags, state, fwaiting, ftags), those arguments, the server's time `now`, and the virtual
  times `vtime` (urgent) and `fvtime` (flex).
]]
--- @include "server-time"
--- @include "bucket"

-- The queue with its common arguments checked, after housekeeping: expired seats and waiters
-- that stopped polling leave. On bad arguments: nil and the error reply.
local function fq_open(keys, ticket, max_seats, tok_cap, tok_rate, lease_ms, heartbeat_ms,
    channel, flex_reserve)
  local q = keys
  q.ticket = ticket
  q.max_seats = tonumber(max_seats)
  q.tok_cap = tonumber(tok_cap)
  q.tok_rate = tonumber(tok_rate)
  q.lease_ms = tonumber(lease_ms)
  q.heartbeat_ms = tonumber(heartbeat_ms)
  q.channel = channel
  q.flex_reserve = tonumber(flex_reserve)
  if not q.flex_reserve or q.flex_reserve < 0 then
    return nil, redis.error_reply('ERR fair-queue: bad flex reserve')
  end
  if ticket == nil or ticket == '' or not q.max_seats or not q.tok_cap or not q.tok_rate
    or not q.lease_ms or not q.heartbeat_ms or q.lease_ms <= 0 or q.heartbeat_ms <= 0
    or (q.tok_cap > 0 and q.tok_rate <= 0) then
    return nil, redis.error_reply('ERR fair-queue: bad arguments')
  end

  q.now = server_time_ms()
  redis.call('ZREMRANGEBYSCORE', q.seats, '-inf', q.now)
  local dead = redis.call('ZRANGEBYSCORE', q.alive, '-inf', q.now, 'LIMIT', 0, 1000)
  for _, id in ipairs(dead) do
    redis.call('ZREM', q.waiting, id)
    redis.call('ZREM', q.fwaiting, id)
    redis.call('HDEL', q.starts, id)
    redis.call('ZREM', q.alive, id)
  end

  local vt = redis.call('HMGET', q.state, 'vtime', 'fvtime')
  q.vtime = tonumber(vt[1]) or 0
  q.fvtime = tonumber(vt[2]) or 0
  return q
end

-- The upstream tokens now, or nil without a tokens-per-minute capacity.
local function fq_tokens(q)
  if q.tok_cap <= 0 then return nil end
  return bucket_level(q.state, q.tok_cap, q.tok_rate, q.now)
end

local function fq_store_tokens(q, tokens)
  if tokens == nil then return end
  -- No expiry of its own: the state hash lives as long as the queue (fq_expire).
  bucket_set(q.state, tokens, q.now)
end

-- Admits waiting heads while capacity allows: urgent ones first; a flex head only when no
-- urgent request waits and the flex reserve stays free. The caller's own ticket gets a full
-- lease, others a claim window. Returns the granted ids, a retry hint and the seats in use.
local function fq_grant(q, own)
  local granted = {}
  local hint = 0
  local seats = redis.call('ZCARD', q.seats)
  local tokens = fq_tokens(q)
  while q.max_seats <= 0 or seats < q.max_seats do
    local flex = false
    local id = redis.call('ZRANGE', q.waiting, 0, 0)[1]
    if not id then
      if q.max_seats > 0 and seats >= q.max_seats - q.flex_reserve then break end
      id = redis.call('ZRANGE', q.fwaiting, 0, 0)[1]
      flex = true
    end
    if not id then break end
    local info = redis.call('HGET', q.starts, id) or '0:1'
    local sep = string.find(info, ':', 1, true)
    local start = tonumber(string.sub(info, 1, sep - 1)) or 0
    local width = tonumber(string.sub(info, sep + 1)) or 1
    if tokens ~= nil then
      local need = math.min(width, q.tok_cap)
      if tokens < need then
        hint = math.ceil((need - tokens) * 1000 / q.tok_rate)
        break
      end
      tokens = tokens - need
    end
    redis.call('ZREM', flex and q.fwaiting or q.waiting, id)
    redis.call('ZREM', q.alive, id)
    redis.call('HDEL', q.starts, id)
    if id == own then
      redis.call('ZADD', q.seats, q.now + q.lease_ms, id)
    else
      redis.call('ZADD', q.seats, q.now + q.heartbeat_ms, id)
    end
    seats = seats + 1
    if flex then
      if start > q.fvtime then q.fvtime = start end
    elseif start > q.vtime then
      q.vtime = start
    end
    granted[#granted + 1] = id
  end
  fq_store_tokens(q, tokens)
  redis.call('HSET', q.state, 'vtime', string.format('%.17g', q.vtime),
    'fvtime', string.format('%.17g', q.fvtime))
  -- A tenant whose last finish is behind the virtual time carries no history any more.
  redis.call('ZREMRANGEBYSCORE', q.tags, '-inf', string.format('%.17g', q.vtime))
  redis.call('ZREMRANGEBYSCORE', q.ftags, '-inf', string.format('%.17g', q.fvtime))
  return granted, hint, seats
end

-- Tells the other waiters granted by this call, on the queue's channel.
local function fq_announce(q, granted, own)
  local others = {}
  for _, id in ipairs(granted) do
    if id ~= own then others[#others + 1] = id end
  end
  if #others > 0 then redis.call('PUBLISH', q.channel, table.concat(others, ',')) end
end

local function fq_expire(q)
  -- Everything lives as long as the longest lease or heartbeat could.
  local ttl = math.max(q.lease_ms, q.heartbeat_ms) + 60000
  for _, k in ipairs({ q.waiting, q.seats, q.starts, q.alive, q.tags, q.state, q.fwaiting,
    q.ftags }) do
    redis.call('PEXPIRE', k, ttl)
  end
end

local function fq_waiting_count(q)
  return redis.call('ZCARD', q.waiting) + redis.call('ZCARD', q.fwaiting)
end

-- The ticket leaves: its seat (the request ended) or its place in the queue (its waiter gave
-- up). A seat's upstream tokens are corrected by `delta` (actual - estimate). Returns 1 it
-- held a seat, 2 it was waiting, 0 unknown (expired).
local function fq_leave(q, delta)
  local was = 0
  if redis.call('ZREM', q.seats, q.ticket) == 1 then
    was = 1
  elseif redis.call('ZREM', q.waiting, q.ticket) + redis.call('ZREM', q.fwaiting, q.ticket) > 0 then
    was = 2
    redis.call('ZREM', q.alive, q.ticket)
    redis.call('HDEL', q.starts, q.ticket)
  end
  if was == 1 and delta ~= 0 and q.tok_cap > 0 then
    local tokens = fq_tokens(q)
    fq_store_tokens(q, math.max(-q.tok_cap, math.min(q.tok_cap, tokens - delta)))
  end
  return was
end

-- After a leave: admits whoever is next and gives the release reply
-- {was, granted, seatsInUse, waiting, grantedIds}.
local function fq_after_leave(q, was)
  local granted, _, seats = fq_grant(q, nil)
  fq_announce(q, granted, nil)
  fq_expire(q)
  return { was, #granted, seats, fq_waiting_count(q), table.concat(granted, ',') }
end
