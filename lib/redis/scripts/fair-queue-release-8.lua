--[[
  The fair queue (includes/fair-queue.lua), release: the request ended (it held a seat) or
  its waiter gave up (still waiting); whoever is next is admitted.

  KEYS[1..8]  the queue's: waiting, seats, starts, alive, tags, state, flex waiting, flex tags
  ARGV[1..8]  ticket id, most seats, upstream tokens burst, tokens refill per second, seat
              lease ms, heartbeat ms, grant channel, flex reserve
              (what each key holds and each argument means: includes/fair-queue.lua)
  ARGV[9]     correction of the upstream tokens: actual - estimate (0 when unknown)

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
