/**
 * scripts/fair-queue-6.lua: a seat granted to a waiter on another node is a claim that lapses
 * after the heartbeat window. tenant-ratelimit lets the request go on as soon as the grant is
 * announced and sends the claim without waiting for it (index.ts, waitInQueue), so a claim can
 * reach Redis after its window, when the seat has gone to the next waiter. Such a late claim
 * must not enter the queue again as a new request: nobody waits on that ticket any more, and
 * its tenant's virtual finish tag moves on for a request that never comes.
 *
 * Known scheduler bug (found by the cluster work, reported to the scheduler's owner): the
 * script treats a ticket it no longer knows as a new request. `test.failing` passes while the
 * bug is there and fails once it is fixed: then make it a plain `test`.
 */
import test from 'ava';
import { closeAllRedis } from '../../lib/redis/client';
import { acquireSeat, releaseSeat, type UpstreamCapacity } from '../../lib/redis/fair-queue';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const A = parseTenantId('tenant-a');
const B = parseTenantId('tenant-b');
const C = parseTenantId('tenant-c');

const cap: UpstreamCapacity = {
  maxConcurrent: 1,
  tokensPerMinute: 0,
  tokenBurst: 0,
  seatLeaseMs: 60_000,
  heartbeatMs: 300,
};

test.failing(
  'a claim that arrives after its window does not enqueue its ticket again',
  async (t) => {
    const redis = await connectRedis();
    const keys = randomKeyspace();
    t.teardown(() => deleteKeyspace(redis, keys));
    const q = keys.fairQueue('llm');

    t.true((await acquireSeat(redis, q, cap, 'a1', A, 1, 100)).granted);
    t.false((await acquireSeat(redis, q, cap, 'b1', B, 1, 100)).granted);
    // a1 ends: the seat goes to b1 as a claim (its waiter is told on the channel and proceeds).
    t.is((await releaseSeat(redis, q, cap, 'a1')).granted, 1);
    t.false((await acquireSeat(redis, q, cap, 'c1', C, 1, 100)).granted);
    // b1's claim is late; c1 keeps polling and gets the seat once the claim window has lapsed.
    let c1 = false;
    for (let i = 0; i < 20 && !c1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      c1 = (await acquireSeat(redis, q, cap, 'c1', C, 1, 100)).granted;
    }
    t.true(c1, 'the lapsed claim freed the seat for the next waiter');

    const late = await acquireSeat(redis, q, cap, 'b1', B, 1, 100);
    t.false(late.granted, 'the only seat is c1’s');
    t.is(late.waiting, 0, 'no phantom waiter for a request that is already at the upstream');
  },
);
