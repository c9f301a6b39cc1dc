/**
 * scripts/fair-queue-cancel-8.lua: tenant-ratelimit sends its tenant-limits decision and its
 * fair-queue acquire in one round trip, so a request its tenant's limits refuse has already
 * entered the queue (or taken a free seat). `cancel` undoes that: the seat or the place goes,
 * the upstream tokens come back, and the tenant's finish tag goes back, so a refused request
 * costs its tenant no place in the queue.
 */
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis } from '../../lib/redis/client';
import {
  acquireSeat,
  cancelSeat,
  releaseSeat,
  type UpstreamCapacity,
} from '../../lib/redis/fair-queue';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

test.after.always(closeAllRedis);

const A = parseTenantId('tenant-a');
const B = parseTenantId('tenant-b');

const cap = (over: Partial<UpstreamCapacity> = {}): UpstreamCapacity => ({
  maxConcurrent: 1,
  tokensPerMinute: 0,
  tokenBurst: 0,
  seatLeaseMs: 60_000,
  heartbeatMs: 60_000,
  ...over,
});

async function setup(t: ExecutionContext) {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, q: keys.fairQueue('llm') };
}

test('a cancelled waiter leaves the queue and its tenant’s tag goes back', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap();
  t.true((await acquireSeat(redis, q, c, 'holder', A, 1, 10)).granted);
  t.false((await acquireSeat(redis, q, c, 'b1', B, 1, 100)).granted);
  const tagB = await redis.zScore(q.tags, B);
  const refused = await acquireSeat(redis, q, c, 'b2', B, 1, 100);
  t.false(refused.granted);
  t.regex(refused.tags, /^[\d.e+-]+:[\d.e+-]+$/);
  t.like(await cancelSeat(redis, q, c, 'b2', B, 'urgent', 100, refused.tags), {
    was: 'waiting',
    waiting: 1,
    seatsInUse: 1,
  });
  t.is(await redis.zScore(q.tags, B), tagB, 'B’s finish tag is back to b1’s');
  t.is(await redis.zScore(q.waiting, 'b2'), null);
  // A poll of a ticket already waiting reports no new tags.
  t.is((await acquireSeat(redis, q, c, 'b1', B, 1, 100)).tags, '');
});

test('a cancelled seat is freed for the next waiter and its upstream tokens come back', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 0, tokensPerMinute: 600, tokenBurst: 500 });
  const refused = await acquireSeat(redis, q, c, 'a1', A, 1, 400);
  t.true(refused.granted);
  // Only 100 tokens left: b1 waits.
  t.false((await acquireSeat(redis, q, c, 'b1', B, 1, 400)).granted);
  const r = await cancelSeat(redis, q, c, 'a1', A, 'urgent', 400, refused.tags);
  t.like(r, { was: 'seated', granted: 1, grantedIds: ['b1'] });
  // A had no other request: it carries no history any more.
  t.is(await redis.zScore(q.tags, A), null);
});

test('cancels of one tenant racing each other give back every width, in any order', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap();
  t.true((await acquireSeat(redis, q, c, 'holder', B, 1, 10)).granted);
  const kept = await acquireSeat(redis, q, c, 'a0', A, 1, 100);
  const tagKept = await redis.zScore(q.tags, A);
  const refused = [];
  for (let i = 1; i <= 4; i++) refused.push(await acquireSeat(redis, q, c, `a${i}`, A, 1, 100));
  t.is(await redis.zScore(q.tags, A), (tagKept ?? 0) + 400);
  // The first cancelled is not the last request: A's tag stays (a note remembers the width).
  for (const i of [2, 1, 4, 3]) {
    const r = refused[i - 1];
    if (!r) throw new Error(`no a${i}`);
    t.like(await cancelSeat(redis, q, c, `a${i}`, A, 'urgent', 100, r.tags), { was: 'waiting' });
  }
  t.is(await redis.zScore(q.tags, A), tagKept, 'back to the kept request’s finish');
  t.false(kept.granted);
  // Cancelling an unknown (expired, released) ticket changes nothing.
  t.like(await cancelSeat(redis, q, c, 'a1', A, 'urgent', 100, refused[0]?.tags ?? ''), {
    was: 'unknown',
  });
  t.is(await redis.zScore(q.tags, A), tagKept);
  // The notes are gone with the chain; only tenants are left in the tags.
  t.deepEqual((await redis.zRange(q.tags, 0, -1)).sort(), [A, B].sort());
  t.like(await releaseSeat(redis, q, c, 'holder'), { grantedIds: ['a0'] });
});

test('a cancel while a later request of the tenant is kept leaves the tag to it', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap();
  t.true((await acquireSeat(redis, q, c, 'holder', B, 1, 10)).granted);
  const first = await acquireSeat(redis, q, c, 'a1', A, 1, 100);
  await acquireSeat(redis, q, c, 'a2', A, 1, 100);
  const tagA = await redis.zScore(q.tags, A);
  t.like(await cancelSeat(redis, q, c, 'a1', A, 'urgent', 100, first.tags), { was: 'waiting' });
  t.is(await redis.zScore(q.tags, A), tagA, 'a2 started at a1’s finish: A’s tag stays');
  t.like(await releaseSeat(redis, q, c, 'holder'), { grantedIds: ['a2'] });
});

test('a flex request cancelled gives back its flex tag', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 2, flexReserve: 1 });
  t.true((await acquireSeat(redis, q, c, 'holder', B, 1, 10)).granted);
  const f = await acquireSeat(redis, q, c, 'f1', A, 1, 50, 'flex');
  t.false(f.granted, 'the last seat is the urgent reserve');
  t.truthy(await redis.zScore(q.flexTags, A));
  t.like(await cancelSeat(redis, q, c, 'f1', A, 'flex', 50, f.tags), {
    was: 'waiting',
    waiting: 0,
  });
  t.is(await redis.zScore(q.flexTags, A), null);
});
