--[[
  Settles a tenant's expired budget reservations for one period without a reserve: the sweep
  token-meter's plugin servers run on a timer (and before showback reads the ledger), so a
  request whose log phase never ran is billed even when its tenant never comes back. Each is
  settled exactly once, as budget-reserve-4.lua's sweep does (both include includes/budget-expiry.lua).

  KEYS[1..4]  budget hash, open reservations, settled request ids, ledger (budget-reserve-4.lua)

  ARGV[1]  least TTL in ms of the budget hash, settled set and ledger once billed: they take
           the budget hash's own TTL (set by the reserve: past the end of the period plus the
           ledger's retention), this when it has none
  ARGV[2]  most reservations settled in this call (1..1000)

  Reply: {settled, tokens, cost, left}
    settled  reservations settled by expiry now; tokens and cost: what they were billed;
    left     1 when more expired reservations wait (call again), else 0
]]
--- @include "<includes>/server-time"
--- @include "includes/budget-expiry"
local ttl = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if not ttl or ttl <= 0 or not limit or limit < 1 or limit > 1000 then
  return redis.error_reply('ERR budget-sweep: bad arguments')
end
local own = redis.call('PTTL', KEYS[1])
if own > ttl then ttl = own end
local now = server_time_ms()


local n, nt, nc = settle_expired(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now, limit, ttl)
local left = redis.call('ZCOUNT', KEYS[2], '-inf', now) > 0 and 1 or 0
return { n, nt, nc, left }
