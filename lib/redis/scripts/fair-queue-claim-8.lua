--[[
  The fair queue (includes/fair-queue.lua), claim: the waiter was told of its grant and its
  request went on, so the seat is held for the request (a full lease). A claim never enters
  the queue: its request is already on its way to the upstream, so a claim that comes after
  its window (housekeeping dropped the seat, which went on to others) answers "not granted"
  and changes nothing (no phantom waiter, no tag moved).

  KEYS[1]  waiting: sorted set ticket -> finish tag (urgent class)
  KEYS[2]  seats: sorted set ticket -> lease expiry ms
  KEYS[3]  starts: hash ticket -> "<start tag>:<width>" of a waiting ticket
  KEYS[4]  alive: sorted set ticket -> heartbeat expiry ms of a waiting ticket
  KEYS[5]  tags: sorted set tenant -> finish tag of its last urgent request (and cancel notes)
  KEYS[6]  state: hash {vtime, fvtime, tokens, ts}
  KEYS[7]  flex waiting: sorted set ticket -> finish tag (flex class)
  KEYS[8]  flex tags: sorted set tenant -> finish tag of its last flex request (and notes)
  ARGV[1]  ticket id (unique per request)
  ARGV[2]  most seats (requests in flight upstream); 0 = no concurrency capacity
  ARGV[3]  upstream tokens burst; 0 = no tokens-per-minute capacity
  ARGV[4]  upstream tokens refill per second
  ARGV[5]  seat lease ms
  ARGV[6]  heartbeat ms (a waiter that does not poll within it leaves the queue; also the
           claim window of a seat granted while its waiter was away)
  ARGV[7]  pub/sub channel told the ids of tickets granted for other waiters
  ARGV[8]  flex reserve: seats a flex request leaves free for urgent ones (0 = none)

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
