/**
 * scripts/fair-queue-claim-8.lua (and acquire's claim path): a seat granted to a waiter on another
 * node is a claim that lapses after the heartbeat window. tenant-ratelimit lets the request go on
 * as soon as the grant is announced and sends the claim without waiting for it
 * (plugins/tenant-ratelimit/queue-wait.ts), so a claim can reach Redis after its window, when the seat has gone to the next
 * waiter. Such a late claim must not enter the queue again as a new request: nobody waits on that
 * ticket any more, and its tenant's virtual finish tag would move on for a request that never
 * comes. Each branch of `claim`: held (a full lease), lapsed (nothing changes), unknown ticket
 * (nothing changes).
 */
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis } from '../../lib/redis/client';
import {
  acquireSeat,
  claimSeat,
  releaseSeat,
  type UpstreamCapacity,
} from '../../lib/redis/fair-queue';
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

async function setup(t: ExecutionContext) {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, q: keys.fairQueue('llm') };
}

test('a claim that arrives after its window does not enqueue its ticket again', async (t) => {
  const { redis, q } = await setup(t);

  t.true((await acquireSeat(redis, q, cap, 'a1', A, 1, 100)).granted);
  t.false((await acquireSeat(redis, q, cap, 'b1', B, 1, 100)).granted);
  const tagBefore = await redis.zScore(q.tags, B);
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

  const late = await claimSeat(redis, q, cap, 'b1');
  t.false(late.claimed, 'the only seat is c1’s');
  t.is(late.waiting, 0, 'no phantom waiter for a request that is already at the upstream');
  t.is(late.seatsInUse, 1);
  t.is(await redis.zScore(q.waiting, 'b1'), null);
  t.is(await redis.zScore(q.alive, 'b1'), null);
  t.is(await redis.zScore(q.tags, B), tagBefore, 'the late claim moved no finish tag');
  // Its log releases a ticket the queue no longer knows: nothing changes.
  t.like(await releaseSeat(redis, q, cap, 'b1'), { was: 'unknown', seatsInUse: 1, waiting: 0 });
});

test('a claim within its window makes the seat a full lease', async (t) => {
  const { redis, q } = await setup(t);
  const c: UpstreamCapacity = { ...cap, heartbeatMs: 2000 };
  t.true((await acquireSeat(redis, q, c, 'a1', A, 1, 100)).granted);
  t.false((await acquireSeat(redis, q, c, 'b1', B, 1, 100)).granted);
  t.like(await releaseSeat(redis, q, c, 'a1'), { grantedIds: ['b1'] });
  const window = Number(await redis.zScore(q.seats, 'b1'));
  const claim = await claimSeat(redis, q, c, 'b1');
  t.like(claim, { claimed: true, seatsInUse: 1, waiting: 0 });
  const lease = Number(await redis.zScore(q.seats, 'b1'));
  // The claim window (2 s) became the seat lease (60 s).
  t.true(lease - window > 50_000, `expiry moved by ${lease - window} ms`);
  // The seat is b1's: a newcomer waits; claiming again is harmless.
  t.false((await acquireSeat(redis, q, c, 'c1', C, 1, 100)).granted);
  t.like(await claimSeat(redis, q, c, 'b1'), { claimed: true, seatsInUse: 1, waiting: 1 });
});

test('a claim of a ticket the queue never granted changes nothing', async (t) => {
  const { redis, q } = await setup(t);
  t.like(await claimSeat(redis, q, cap, 'nobody'), { claimed: false, seatsInUse: 0, waiting: 0 });
  t.true((await acquireSeat(redis, q, cap, 'a1', A, 1, 100)).granted);
  // A waiting ticket is not granted by claiming it, and keeps its place.
  t.false((await acquireSeat(redis, q, cap, 'b1', B, 1, 100)).granted);
  t.like(await claimSeat(redis, q, cap, 'b1'), { claimed: false, seatsInUse: 1, waiting: 1 });
  t.like(await releaseSeat(redis, q, cap, 'a1'), { grantedIds: ['b1'] });
});
