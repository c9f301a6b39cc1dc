--[[
  The sweep of a tenant period's expired budget reservations, shared by budget-reserve-4.lua
  (which runs it first) and budget-sweep-4.lua (the timer's, and showback's, sweep alone).
  Keys are passed in: an include reads no KEYS or ARGV of its own (lib/redis/lua-script.ts).
    budget   the budget hash;  open  the open reservations (rid -> expiry ms)
    settled  settled request ids;  ledger  the usage ledger stream
]]
-- Settles up to `limit` reservations expired by `now`: each releases what it held and, when
-- the reserve stored what it is billed as (`e:<rid>`), is billed once as estimated with its
-- ledger entry (settled_by = expiry) and its request id marked settled, so a late log or a
-- spool replay of the same id changes nothing. A request id already settled (its log came
-- first and a copy of the reservation survived) is only released. Returns count, tokens, cost.
local function settle_expired(budget, open, settled, ledger, now, limit, ttl)
  local expired = redis.call('ZRANGEBYSCORE', open, '-inf', now, 'LIMIT', 0, limit)
  local n, nt, nc = 0, 0, 0
  for _, old in ipairs(expired) do
    local held = redis.call('HGET', budget, 'r:' .. old)
    if held then
      local t, c = string.match(held, '^(%d+) (%d+)$')
      -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
      redis.call('HINCRBY', budget, 'reserved_tokens', 0 - tonumber(t))
      redis.call('HINCRBY', budget, 'reserved_cost', 0 - tonumber(c))
      redis.call('HDEL', budget, 'r:' .. old)
    end
    local bill = redis.call('HGET', budget, 'e:' .. old)
    if bill then
      redis.call('HDEL', budget, 'e:' .. old)
      if redis.call('SADD', settled, old) == 1 then
        local e = cjson.decode(bill)
        redis.call('HINCRBY', budget, 'used_tokens', e.t)
        redis.call('HINCRBY', budget, 'used_cost', e.c)
        local entry = { 'rid', old }
        for _, v in ipairs(e.f) do entry[#entry + 1] = v end
        local id = redis.call('XADD', ledger, '*', unpack(entry))
        -- What an exact settlement arriving later (a spool replayed after an outage longer
        -- than the TTL) replaces: this entry and the amounts it billed (budget-settle-4.lua).
        redis.call('HSET', budget, 'x:' .. old,
          string.format('%s %.0f %.0f', id, tonumber(e.t), tonumber(e.c)))
        n = n + 1
        nt = nt + tonumber(e.t)
        nc = nc + tonumber(e.c)
      end
    end
    redis.call('ZREM', open, old)
  end
  if n > 0 then
    redis.call('PEXPIRE', budget, ttl)
    redis.call('PEXPIRE', settled, ttl)
    redis.call('PEXPIRE', ledger, ttl)
  end
  return n, nt, nc
end
