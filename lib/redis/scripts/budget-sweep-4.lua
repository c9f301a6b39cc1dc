--[[
  Settles a tenant's expired budget reservations for one period without a reserve: the sweep
  token-meter's plugin servers run on a timer (and before showback reads the ledger), so a
  request whose log phase never ran is billed even when its tenant never comes back. Each is
  settled exactly once, as budget-reserve-4.lua's sweep does (the same code, below).

  KEYS[1..4]  budget hash, open reservations, settled request ids, ledger (budget-reserve-4.lua)

  ARGV[1]  least TTL in ms of the budget hash, settled set and ledger once billed: they take
           the budget hash's own TTL (set by the reserve: past the end of the period plus the
           ledger's retention), this when it has none
  ARGV[2]  most reservations settled in this call (1..1000)

  Reply: {settled, tokens, cost, left}
    settled  reservations settled by expiry now; tokens and cost: what they were billed;
    left     1 when more expired reservations wait (call again), else 0
]]
local ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if not ttl or ttl <= 0 or not limit or limit < 1 or limit > 1000 then
  return redis.error_reply('ERR budget-sweep: bad arguments')
end
local own = redis.call('PTTL', KEYS[1])
if own > ttl then ttl = own end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- expiry-sweep:begin (the same text in budget-reserve-4.lua and budget-sweep-4.lua, checked by
-- test/unit/token-meter-expiry.test.ts, until lua-script.ts resolves `--- @include`)
-- Settles up to `limit` reservations expired by `now`: each releases what it held and, when
-- the reserve stored what it is billed as (`e:<rid>`), is billed once as estimated with its
-- ledger entry (settled_by = expiry) and its request id marked settled, so a late log or a
-- spool replay of the same id changes nothing. A request id already settled (its log came
-- first and a copy of the reservation survived) is only released. Returns count, tokens, cost.
local function settle_expired(now, limit, ttl)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
  local n, nt, nc = 0, 0, 0
  for _, old in ipairs(expired) do
    local held = redis.call('HGET', KEYS[1], 'r:' .. old)
    if held then
      local t, c = string.match(held, '^(%d+) (%d+)$')
      -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
      redis.call('HINCRBY', KEYS[1], 'reserved_tokens', 0 - tonumber(t))
      redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - tonumber(c))
      redis.call('HDEL', KEYS[1], 'r:' .. old)
    end
    local bill = redis.call('HGET', KEYS[1], 'e:' .. old)
    if bill then
      redis.call('HDEL', KEYS[1], 'e:' .. old)
      if redis.call('SADD', KEYS[3], old) == 1 then
        local e = cjson.decode(bill)
        redis.call('HINCRBY', KEYS[1], 'used_tokens', e.t)
        redis.call('HINCRBY', KEYS[1], 'used_cost', e.c)
        local entry = { 'rid', old }
        for _, v in ipairs(e.f) do entry[#entry + 1] = v end
        redis.call('XADD', KEYS[4], '*', unpack(entry))
        n = n + 1
        nt = nt + tonumber(e.t)
        nc = nc + tonumber(e.c)
      end
    end
    redis.call('ZREM', KEYS[2], old)
  end
  if n > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[3], ttl)
    redis.call('PEXPIRE', KEYS[4], ttl)
  end
  return n, nt, nc
end
-- expiry-sweep:end

local n, nt, nc = settle_expired(now, limit, ttl)
local left = redis.call('ZCOUNT', KEYS[2], '-inf', now) > 0 and 1 or 0
return { n, nt, nc, left }
