--[[
  The fair queue (includes/fair-queue.lua), claim: the waiter was told of its grant and its
  request went on, so the seat is held for the request (a full lease). A claim never enters
  the queue: its request is already on its way to the upstream, so a claim that comes after
  its window (housekeeping dropped the seat, which went on to others) answers "not granted"
  and changes nothing (no phantom waiter, no tag moved).

  KEYS[1..8]  the queue's: waiting, seats, starts, alive, tags, state, flex waiting, flex tags
  ARGV[1..8]  ticket id, most seats, upstream tokens burst, tokens refill per second, seat
              lease ms, heartbeat ms, grant channel, flex reserve
              (what each key holds and each argument means: includes/fair-queue.lua)

  Reply: {claimed, seatsInUse, waiting}
    claimed      1 the claim was held: it is a full lease now; 0 it had lapsed: nothing
                 changed, the ticket is not queued
]]
--- @include "includes/fair-queue"

local q, bad = fq_open({
  waiting = KEYS[1], seats = KEYS[2], starts = KEYS[3], alive = KEYS[4],
  tags = KEYS[5], state = KEYS[6], fwaiting = KEYS[7], ftags = KEYS[8],
}, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if not q then return bad end

local claimed = 0
if redis.call('ZSCORE', q.seats, q.ticket) then
  redis.call('ZADD', q.seats, q.now + q.lease_ms, q.ticket)
  claimed = 1
end
fq_expire(q)
return { claimed, redis.call('ZCARD', q.seats), fq_waiting_count(q) }
