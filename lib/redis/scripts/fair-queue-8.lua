--[[
  Weighted fair queuing of one shared upstream, for the whole cluster: every gateway node
  runs this script against the same keys, so they schedule as one.

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
  `claim` operation. A claim never enters the queue: its request is already on its way to
  the upstream, so a claim that comes after its window answers "not granted" and changes
  nothing (no phantom waiter, no tag moved).

  `cancel` undoes an `acquire` whose request will not run after all (its tenant's own limits
  refused it, decided in the same round trip on another slot): like `release`, and its
  tenant's finish tag goes back by its width, also when cancels of one tenant race each
  other (a note carries a cancelled width until the tag comes back to it), so a refused
  request costs its tenant no place in the queue.

  KEYS[1]  waiting: sorted set ticket -> finish tag (urgent class)
  KEYS[2]  seats: sorted set ticket -> lease expiry ms
  KEYS[3]  starts: hash ticket -> "<start tag>:<width>" of a waiting ticket
  KEYS[4]  alive: sorted set ticket -> heartbeat expiry ms of a waiting ticket
  KEYS[5]  tags: sorted set tenant -> finish tag of its last urgent request (and the
           cancel notes, `<tenant>:<start>` -> finish of a cancelled request)
  KEYS[6]  state: hash {vtime, fvtime, tokens, ts}
  KEYS[7]  flex waiting: sorted set ticket -> finish tag (flex class)
  KEYS[8]  flex tags: sorted set tenant -> finish tag of its last flex request (and notes)
  ARGV[1]  operation: `acquire` (enter the queue / poll), `claim` (make a granted claim a
           full lease), `release` (done, or gave up) or `cancel` (undo an acquire)
  ARGV[2]  ticket id (unique per request)
  ARGV[3]  most seats (requests in flight upstream); 0 = no concurrency capacity
  ARGV[4]  upstream tokens burst; 0 = no tokens-per-minute capacity
  ARGV[5]  upstream tokens refill per second
  ARGV[6]  seat lease ms
  ARGV[7]  heartbeat ms (a waiter that does not poll within it leaves the queue; also the
           claim window of a seat granted while its waiter was away)
  ARGV[8]  pub/sub channel told the ids of tickets granted for other waiters
  ARGV[9]  flex reserve: seats a flex request leaves free for urgent ones (0 = none)
  acquire: ARGV[10] tenant id, ARGV[11] weight (> 0), ARGV[12] width (tokens, >= 1),
           ARGV[13] class: `urgent` or `flex`
  release: ARGV[10] correction of the upstream tokens: actual - estimate (0 when unknown)
  cancel:  ARGV[10] correction of the upstream tokens (minus the width: nothing was used),
           ARGV[11] tenant id, ARGV[12] class, ARGV[13] the `tags` of its acquire's reply
  claim:   no more arguments

  Reply to acquire: {granted, position, seatsInUse, waiting, retryHintMs, tags}
    granted      1 the ticket holds a seat now (proceed), 0 it waits
    position     0-based rank among the waiting of its class (0 when granted)
    seatsInUse   seats held after this call
    waiting      tickets waiting after this call (both classes)
    retryHintMs  when waiting on tokens: ms until the head's tokens are there; else 0
    tags         "<start>:<finish>" given to a ticket on entering the queue ('' on a poll)
  Reply to claim: {claimed, seatsInUse, waiting}
    claimed      1 the claim was held: it is a full lease now; 0 it had lapsed (the seat
                 went on to others): nothing changed, the ticket is not queued
  Reply to release and cancel: {was, granted, seatsInUse, waiting, grantedIds}
    was          1 it held a seat, 2 it was waiting (gave up), 0 unknown (expired)
    granted      tickets this call admitted (their waiters are told on the channel)
    grantedIds   their ids, comma-separated ('' when none): the caller wakes its own
                 process's waiters at once, without waiting for the channel
]]
local K_WAITING, K_SEATS, K_STARTS, K_ALIVE, K_TAGS, K_STATE, K_FWAITING, K_FTAGS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op = ARGV[1]
local ticket = ARGV[2]
local max_seats = tonumber(ARGV[3])
local tok_cap = tonumber(ARGV[4])
local tok_rate = tonumber(ARGV[5])
local lease_ms = tonumber(ARGV[6])
local heartbeat_ms = tonumber(ARGV[7])
local channel = ARGV[8]
local flex_reserve = tonumber(ARGV[9])
if not flex_reserve or flex_reserve < 0 then
  return redis.error_reply('ERR fair-queue: bad flex reserve')
end
if (op ~= 'acquire' and op ~= 'release' and op ~= 'claim' and op ~= 'cancel') or ticket == nil or ticket == ''
  or not max_seats or not tok_cap or not tok_rate or not lease_ms or not heartbeat_ms
  or lease_ms <= 0 or heartbeat_ms <= 0 or (tok_cap > 0 and tok_rate <= 0) then
  return redis.error_reply('ERR fair-queue: bad arguments')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Housekeeping: expired seats and waiters that stopped polling leave.
redis.call('ZREMRANGEBYSCORE', K_SEATS, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', K_ALIVE, '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(dead) do
  redis.call('ZREM', K_WAITING, id)
  redis.call('ZREM', K_FWAITING, id)
  redis.call('HDEL', K_STARTS, id)
  redis.call('ZREM', K_ALIVE, id)
end

local vt = redis.call('HMGET', K_STATE, 'vtime', 'fvtime')
local vtime = tonumber(vt[1]) or 0
local fvtime = tonumber(vt[2]) or 0

local function tokens_level()
  if tok_cap <= 0 then return nil end
  local st = redis.call('HMGET', K_STATE, 'tokens', 'ts')
  local tokens = tonumber(st[1])
  local ts = tonumber(st[2])
  if tokens == nil or ts == nil then return tok_cap end
  return math.min(tok_cap, tokens + math.max(0, now - ts) * tok_rate / 1000)
end

local function store_tokens(tokens)
  if tokens == nil then return end
  redis.call('HSET', K_STATE, 'tokens', string.format('%.17g', tokens), 'ts', now)
end

-- Admits waiting heads while capacity allows: urgent ones first; a flex head only when no
-- urgent request waits and the flex reserve stays free. The caller's own ticket gets a full
-- lease, others a claim window. Returns the granted ids, a retry hint and the seats in use.
local function grant(own)
  local granted = {}
  local hint = 0
  local seats = redis.call('ZCARD', K_SEATS)
  local tokens = tokens_level()
  while max_seats <= 0 or seats < max_seats do
    local flex = false
    local id = redis.call('ZRANGE', K_WAITING, 0, 0)[1]
    if not id then
      if max_seats > 0 and seats >= max_seats - flex_reserve then break end
      id = redis.call('ZRANGE', K_FWAITING, 0, 0)[1]
      flex = true
    end
    if not id then break end
    local info = redis.call('HGET', K_STARTS, id) or '0:1'
    local sep = string.find(info, ':', 1, true)
    local start = tonumber(string.sub(info, 1, sep - 1)) or 0
    local width = tonumber(string.sub(info, sep + 1)) or 1
    if tokens ~= nil then
      local need = math.min(width, tok_cap)
      if tokens < need then
        hint = math.ceil((need - tokens) * 1000 / tok_rate)
        break
      end
      tokens = tokens - need
    end
    redis.call('ZREM', flex and K_FWAITING or K_WAITING, id)
    redis.call('ZREM', K_ALIVE, id)
    redis.call('HDEL', K_STARTS, id)
    if id == own then
      redis.call('ZADD', K_SEATS, now + lease_ms, id)
    else
      redis.call('ZADD', K_SEATS, now + heartbeat_ms, id)
    end
    seats = seats + 1
    if flex then
      if start > fvtime then fvtime = start end
    elseif start > vtime then
      vtime = start
    end
    granted[#granted + 1] = id
  end
  store_tokens(tokens)
  redis.call('HSET', K_STATE, 'vtime', string.format('%.17g', vtime),
    'fvtime', string.format('%.17g', fvtime))
  -- A tenant whose last finish is behind the virtual time carries no history any more.
  redis.call('ZREMRANGEBYSCORE', K_TAGS, '-inf', string.format('%.17g', vtime))
  redis.call('ZREMRANGEBYSCORE', K_FTAGS, '-inf', string.format('%.17g', fvtime))
  return granted, hint, seats
end

local function announce(granted, own)
  local others = {}
  for _, id in ipairs(granted) do
    if id ~= own then others[#others + 1] = id end
  end
  if #others > 0 then redis.call('PUBLISH', channel, table.concat(others, ',')) end
end

local function expire_all()
  -- Everything lives as long as the longest lease or heartbeat could.
  local ttl = math.max(lease_ms, heartbeat_ms) + 60000
  for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
end

local function waiting_count()
  return redis.call('ZCARD', K_WAITING) + redis.call('ZCARD', K_FWAITING)
end

if op == 'claim' then
  -- The waiter was told of its grant and its request went on: hold the seat for the request,
  -- or, when the claim window has passed (housekeeping above dropped it), change nothing.
  local claimed = 0
  if redis.call('ZSCORE', K_SEATS, ticket) then
    redis.call('ZADD', K_SEATS, now + lease_ms, ticket)
    claimed = 1
  end
  expire_all()
  return { claimed, redis.call('ZCARD', K_SEATS), waiting_count() }
end

if op == 'acquire' then
  local tenant = ARGV[10]
  local weight = tonumber(ARGV[11])
  local width = tonumber(ARGV[12])
  local class = ARGV[13]
  if tenant == nil or tenant == '' or not weight or weight <= 0 or not width or width < 1
    or (class ~= 'urgent' and class ~= 'flex') then
    return redis.error_reply('ERR fair-queue acquire: bad tenant, weight, width or class')
  end
  local flex = class == 'flex'
  local k_wait = flex and K_FWAITING or K_WAITING
  if redis.call('ZSCORE', K_SEATS, ticket) then
    -- Granted while this waiter was away: the claim becomes a full lease.
    redis.call('ZADD', K_SEATS, now + lease_ms, ticket)
    expire_all()
    return { 1, 0, redis.call('ZCARD', K_SEATS), waiting_count(), 0, '' }
  end
  local tags = ''
  if not redis.call('ZSCORE', k_wait, ticket) then
    local k_tags = flex and K_FTAGS or K_TAGS
    local last = tonumber(redis.call('ZSCORE', k_tags, tenant)) or 0
    local start = math.max(flex and fvtime or vtime, last)
    local finish = start + width / weight
    redis.call('ZADD', k_tags, string.format('%.17g', finish), tenant)
    redis.call('ZADD', k_wait, string.format('%.17g', finish), ticket)
    redis.call('HSET', K_STARTS, ticket, string.format('%.17g', start) .. ':' .. width)
    tags = string.format('%.17g', start) .. ':' .. string.format('%.17g', finish)
  end
  redis.call('ZADD', K_ALIVE, now + heartbeat_ms, ticket)
  local granted, hint, seats = grant(ticket)
  announce(granted, ticket)
  expire_all()
  local waiting = waiting_count()
  for _, id in ipairs(granted) do
    if id == ticket then return { 1, 0, seats, waiting, 0, tags } end
  end
  return { 0, redis.call('ZRANK', k_wait, ticket) or 0, seats, waiting, hint, tags }
end

-- release: the request ended (held a seat) or its waiter gave up (still waiting).
-- cancel: the same, for a request that never ran, and its tenant's tag goes back.
local delta = tonumber(ARGV[10]) or 0
local was = 0
if redis.call('ZREM', K_SEATS, ticket) == 1 then
  was = 1
elseif redis.call('ZREM', K_WAITING, ticket) + redis.call('ZREM', K_FWAITING, ticket) > 0 then
  was = 2
  redis.call('ZREM', K_ALIVE, ticket)
  redis.call('HDEL', K_STARTS, ticket)
end
if was == 1 and delta ~= 0 and tok_cap > 0 then
  local tokens = tokens_level()
  store_tokens(math.max(-tok_cap, math.min(tok_cap, tokens - delta)))
end
if op == 'cancel' and was ~= 0 then
  local tenant = ARGV[11]
  local class = ARGV[12]
  local tags = ARGV[13] or ''
  local sep = string.find(tags, ':', 1, true)
  if tenant == nil or tenant == '' or (class ~= 'urgent' and class ~= 'flex') then
    return redis.error_reply('ERR fair-queue cancel: bad tenant or class')
  end
  local start = sep and tonumber(string.sub(tags, 1, sep - 1))
  local finish = sep and tonumber(string.sub(tags, sep + 1))
  if start and finish then
    local k_tags = class == 'flex' and K_FTAGS or K_TAGS
    local v = class == 'flex' and fvtime or vtime
    local current = tonumber(redis.call('ZSCORE', k_tags, tenant))
    local note_prefix = tenant .. ':'
    if current == finish then
      -- The tenant's last request: its tag goes back to this one's start, and on through
      -- the notes of cancelled requests that ended where that one started.
      for _ = 1, 100 do
        local at = string.format('%.17g', start)
        local note = nil
        for _, m in ipairs(redis.call('ZRANGEBYSCORE', k_tags, at, at)) do
          if string.sub(m, 1, #note_prefix) == note_prefix then note = m break end
        end
        if not note then break end
        redis.call('ZREM', k_tags, note)
        start = tonumber(string.sub(note, #note_prefix + 1)) or start
      end
      if start <= v then
        redis.call('ZREM', k_tags, tenant)
      else
        redis.call('ZADD', k_tags, string.format('%.17g', start), tenant)
      end
    elseif current and current > finish then
      -- A later request of the tenant started from this finish tag: leave a note (member
      -- `<tenant>:<start>`, scored by this finish; no tenant id holds a ':'), so that when
      -- the tag comes back here it goes on back to this start. Notes behind the virtual
      -- time are dropped with the tags.
      redis.call('ZADD', k_tags, string.format('%.17g', finish), note_prefix .. string.format('%.17g', start))
    end
  end
end
local granted, _, seats = grant(nil)
announce(granted, nil)
expire_all()
return { was, #granted, seats, waiting_count(), table.concat(granted, ',') }
