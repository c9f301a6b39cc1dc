--[[
  The fair queue (includes/fair-queue.lua), release: the request ended (it held a seat) or
  its waiter gave up (still waiting); whoever is next is admitted.

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
  ARGV[9]  correction of the upstream tokens: actual - estimate (0 when unknown)

  Reply: {was, granted, seatsInUse, waiting, grantedIds}
    was          1 it held a seat, 2 it was waiting (gave up), 0 unknown (expired)
    granted      tickets this call admitted (their waiters are told on the channel)
    seatsInUse   seats held after this call
    waiting      tickets waiting after this call (both classes)
    grantedIds   their ids, comma-separated ('' when none): the caller wakes its own
                 process's waiters at once, without waiting for the channel
]]
--- @include "includes/fair-queue"

local q, bad = fq_open({
  waiting = KEYS[1], seats = KEYS[2], starts = KEYS[3], alive = KEYS[4],
  tags = KEYS[5], state = KEYS[6], fwaiting = KEYS[7], ftags = KEYS[8],
}, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if not q then return bad end

local was = fq_leave(q, tonumber(ARGV[9]) or 0)
return fq_after_leave(q, was)
