--[[
  The fair queue (includes/fair-queue.lua), cancel: undoes an acquire whose request will not
  run after all (its tenant's own limits refused it, decided in the same round trip on
  another slot). Like release, and its tenant's finish tag goes back by its width, also when
  cancels of one tenant race each other (a note carries a cancelled width until the tag comes
  back to it), so a refused request costs its tenant no place in the queue.

  KEYS[1..8]  the queue's: waiting, seats, starts, alive, tags, state, flex waiting, flex tags
  ARGV[1..8]  ticket id, most seats, upstream tokens burst, tokens refill per second, seat
              lease ms, heartbeat ms, grant channel, flex reserve
              (what each key holds and each argument means: includes/fair-queue.lua)
  ARGV[9]     correction of the upstream tokens (minus the width: nothing was used)
  ARGV[10]    tenant id
  ARGV[11]    class: `urgent` or `flex`
  ARGV[12]    the `tags` of its acquire's reply ("<start>:<finish>", or '')

  Reply: {was, granted, seatsInUse, waiting, grantedIds}, as release's
]]
--- @include "includes/fair-queue"

local q, bad = fq_open({
  waiting = KEYS[1], seats = KEYS[2], starts = KEYS[3], alive = KEYS[4],
  tags = KEYS[5], state = KEYS[6], fwaiting = KEYS[7], ftags = KEYS[8],
}, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if not q then return bad end

local was = fq_leave(q, tonumber(ARGV[9]) or 0)
if was ~= 0 then
  local tenant = ARGV[10]
  local class = ARGV[11]
  local tags = ARGV[12] or ''
  local sep = string.find(tags, ':', 1, true)
  if tenant == nil or tenant == '' or (class ~= 'urgent' and class ~= 'flex') then
    return redis.error_reply('ERR fair-queue cancel: bad tenant or class')
  end
  local start = sep and tonumber(string.sub(tags, 1, sep - 1))
  local finish = sep and tonumber(string.sub(tags, sep + 1))
  if start and finish then
    local k_tags = class == 'flex' and q.ftags or q.tags
    local v = class == 'flex' and q.fvtime or q.vtime
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
return fq_after_leave(q, was)
