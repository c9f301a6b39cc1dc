/**
 * scripts/fair-queue-{acquire,claim,release,cancel}-8.lua against the real Redis at REDIS_URL:
 * work-conserving admission, weighted fair order across tenants, FIFO within a tenant, give-up,
 * expiry of dead seats and dead waiters, the tokens capacity, the grant announcement on the
 * channel, and the flex (non-urgent) class: after every urgent request, only on idle seats,
 * weighted on its own.
 */
import test, { type ExecutionContext } from 'ava';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { FairQueueKeys, Keyspace } from '../../lib/redis/keys';
import {
  acquireSeat,
  grantedTickets,
  releaseSeat,
  type UpstreamCapacity,
} from '../../lib/redis/fair-queue';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

const A = parseTenantId('tenant-a');
const B = parseTenantId('tenant-b');
const C = parseTenantId('tenant-c');

test.after.always(closeAllRedis);

async function setup(
  t: ExecutionContext,
): Promise<{ redis: RedisClient; keys: Keyspace; q: FairQueueKeys }> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return { redis, keys, q: keys.fairQueue('llm') };
}

const cap = (over: Partial<UpstreamCapacity> = {}): UpstreamCapacity => ({
  maxConcurrent: 2,
  tokensPerMinute: 0,
  tokenBurst: 0,
  seatLeaseMs: 60_000,
  heartbeatMs: 60_000,
  ...over,
});

test('work-conserving: below capacity every request is granted at once', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 3 });
  for (const [i, tenant] of [A, A, B].entries()) {
    t.like(await acquireSeat(redis, q, c, `t${i}`, tenant, 1, 100), {
      granted: true,
      seatsInUse: i + 1,
      waiting: 0,
    });
  }
  t.like(await acquireSeat(redis, q, c, 't3', C, 1, 100), { granted: false, position: 0 });
});

test('a released seat goes to the head of the queue, and the grant is announced', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  const sub = redis.duplicate();
  await sub.connect();
  t.teardown(() => sub.close());
  const messages: string[] = [];
  await sub.subscribe(q.channel, (m) => messages.push(m));

  t.true((await acquireSeat(redis, q, c, 'first', A, 1, 10)).granted);
  t.false((await acquireSeat(redis, q, c, 'second', B, 1, 10)).granted);
  t.like(await releaseSeat(redis, q, c, 'first'), {
    was: 'seated',
    granted: 1,
    seatsInUse: 1,
    grantedIds: ['second'],
  });
  for (let i = 0; i < 50 && messages.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(messages.flatMap(grantedTickets), ['second']);
  // The waiter claims its seat on its next poll.
  t.like(await acquireSeat(redis, q, c, 'second', B, 1, 10), { granted: true, seatsInUse: 1 });
});

/** Fills the single seat, enqueues `plan` in order, then drains: the admission order. */
async function admissionOrder(
  redis: RedisClient,
  q: FairQueueKeys,
  plan: Array<{ id: string; tenant: TenantId; weight: number; width: number }>,
): Promise<string[]> {
  const c = cap({ maxConcurrent: 1 });
  await acquireSeat(redis, q, c, 'blocker', C, 1, 1);
  for (const p of plan) await acquireSeat(redis, q, c, p.id, p.tenant, p.weight, p.width);
  const order: string[] = [];
  let holder = 'blocker';
  for (let i = 0; i < plan.length; i++) {
    await releaseSeat(redis, q, c, holder);
    for (const p of plan) {
      if (order.includes(p.id)) continue;
      const r = await acquireSeat(redis, q, c, p.id, p.tenant, p.weight, p.width);
      if (r.granted) {
        order.push(p.id);
        holder = p.id;
        break;
      }
    }
  }
  return order;
}

test('a flood from one tenant is interleaved with another tenant, FIFO within each', async (t) => {
  const { redis, q } = await setup(t);
  const plan = [
    ...Array.from({ length: 6 }, (_, i) => ({ id: `a${i}`, tenant: A, weight: 1, width: 10 })),
    { id: 'b0', tenant: B, weight: 1, width: 10 },
    { id: 'b1', tenant: B, weight: 1, width: 10 },
  ];
  const order = await admissionOrder(redis, q, plan);
  t.is(order.length, 8);
  // B's requests arrived after A's six, yet are served among A's first ones.
  t.true(order.indexOf('b0') <= 2, order.join(' '));
  t.true(order.indexOf('b1') <= 4, order.join(' '));
  t.deepEqual(
    order.filter((id) => id.startsWith('a')),
    ['a0', 'a1', 'a2', 'a3', 'a4', 'a5'],
  );
});

test('weights: a tenant with weight 4 gets four admissions for each one of weight 1', async (t) => {
  const { redis, q } = await setup(t);
  const plan = [
    ...Array.from({ length: 8 }, (_, i) => ({ id: `a${i}`, tenant: A, weight: 1, width: 10 })),
    ...Array.from({ length: 8 }, (_, i) => ({ id: `b${i}`, tenant: B, weight: 4, width: 10 })),
  ];
  const order = await admissionOrder(redis, q, plan);
  const firstTen = order.slice(0, 10);
  t.is(firstTen.filter((id) => id.startsWith('b')).length, 8, firstTen.join(' '));
});

test('width: a wide request counts for more virtual time than a narrow one', async (t) => {
  const { redis, q } = await setup(t);
  const plan = [
    ...Array.from({ length: 3 }, (_, i) => ({ id: `a${i}`, tenant: A, weight: 1, width: 1000 })),
    ...Array.from({ length: 3 }, (_, i) => ({ id: `b${i}`, tenant: B, weight: 1, width: 100 })),
  ];
  const order = await admissionOrder(redis, q, plan);
  t.deepEqual(order.slice(0, 3), ['b0', 'b1', 'b2']);
});

test('a waiter that gives up leaves the queue and frees its place', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  await acquireSeat(redis, q, c, 'holder', A, 1, 1);
  await acquireSeat(redis, q, c, 'quitter', B, 1, 1);
  t.like(await acquireSeat(redis, q, c, 'patient', C, 1, 5), { granted: false, position: 1 });
  t.like(await releaseSeat(redis, q, c, 'quitter'), { was: 'waiting', granted: 0, waiting: 1 });
  t.like(await acquireSeat(redis, q, c, 'patient', C, 1, 5), { position: 0 });
  t.like(await releaseSeat(redis, q, c, 'holder'), { granted: 1 });
  t.like(await acquireSeat(redis, q, c, 'patient', C, 1, 5), { granted: true });
});

test('a dead node: its seats expire with their lease, its waiters with their heartbeat', async (t) => {
  const { redis, q } = await setup(t);
  const short = cap({ maxConcurrent: 1, seatLeaseMs: 1500, heartbeatMs: 1500 });
  t.true((await acquireSeat(redis, q, short, 'dead-seat', A, 1, 1)).granted);
  t.false((await acquireSeat(redis, q, short, 'dead-waiter', A, 1, 1)).granted);
  await new Promise((r) => setTimeout(r, 1700));
  // Nobody released anything: the lease and the heartbeat ran out.
  t.like(await acquireSeat(redis, q, short, 'alive', B, 1, 1), {
    granted: true,
    waiting: 0,
    seatsInUse: 1,
  });
  t.like(await releaseSeat(redis, q, short, 'dead-waiter'), { was: 'unknown' });
});

test('a seat granted to an absent waiter is only a claim: it expires unless claimed', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1, heartbeatMs: 1500 });
  await acquireSeat(redis, q, c, 'holder', A, 1, 1);
  await acquireSeat(redis, q, c, 'absent', B, 1, 1);
  t.like(await releaseSeat(redis, q, c, 'holder'), { granted: 1 });
  await new Promise((r) => setTimeout(r, 1700));
  t.like(await acquireSeat(redis, q, c, 'newcomer', C, 1, 1), { granted: true, seatsInUse: 1 });
});

test('tokens capacity: admission waits for upstream tokens; the hint says how long', async (t) => {
  const { redis, q } = await setup(t);
  // 6000 tokens per minute = 100 per second, burst 500, no concurrency capacity.
  const c = cap({ maxConcurrent: 0, tokensPerMinute: 6000, tokenBurst: 500 });
  t.true((await acquireSeat(redis, q, c, 'x', A, 1, 400)).granted);
  const waiting = await acquireSeat(redis, q, c, 'y', B, 1, 400);
  t.false(waiting.granted);
  t.true(waiting.retryHintMs > 2000 && waiting.retryHintMs <= 3000, `${waiting.retryHintMs}`);
  // The first request used only 100 tokens of its 400: the refund admits the next one.
  t.like(await releaseSeat(redis, q, c, 'x', 100 - 400), { granted: 1 });
  t.like(await acquireSeat(redis, q, c, 'y', B, 1, 400), { granted: true });
});

test('the queue keys expire by themselves', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  await acquireSeat(redis, q, c, 'one', A, 1, 1);
  await acquireSeat(redis, q, c, 'two', B, 1, 1);
  for (const k of [q.waiting, q.seats, q.state, q.tags]) {
    t.true((await redis.pTTL(k)) > 0, k);
  }
});

test('a victim arriving behind a flood is admitted at the next release', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 2 });
  for (let i = 0; i < 2; i++) t.true((await acquireSeat(redis, q, c, `a${i}`, A, 1, 25)).granted);
  for (let i = 2; i < 22; i++) await acquireSeat(redis, q, c, `a${i}`, A, 1, 25);
  t.like(await releaseSeat(redis, q, c, 'a0'), { grantedIds: ['a2'] });
  // B arrives with 19 of A's requests waiting: it goes first.
  t.like(await acquireSeat(redis, q, c, 'victim', B, 1, 25), { granted: false, position: 0 });
  t.like(await releaseSeat(redis, q, c, 'a1'), { grantedIds: ['victim'] });
});

test('flex: waits behind every urgent request, its own tenant’s included', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  t.true((await acquireSeat(redis, q, c, 'blocker', C, 1, 10)).granted);
  t.false((await acquireSeat(redis, q, c, 'a-flex', A, 1, 10, 'flex')).granted);
  t.false((await acquireSeat(redis, q, c, 'b-urgent', B, 1, 1000)).granted);
  t.false((await acquireSeat(redis, q, c, 'a-urgent', A, 1, 10)).granted);
  t.like(await releaseSeat(redis, q, c, 'blocker'), { grantedIds: ['a-urgent'] });
  t.like(await releaseSeat(redis, q, c, 'a-urgent'), { grantedIds: ['b-urgent'] });
  t.like(await releaseSeat(redis, q, c, 'b-urgent'), { grantedIds: ['a-flex'], waiting: 0 });
});

test('flex: uses idle seats but leaves the reserve free for urgent arrivals', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 3, flexReserve: 1 });
  t.like(await acquireSeat(redis, q, c, 'f1', A, 1, 10, 'flex'), { granted: true });
  t.like(await acquireSeat(redis, q, c, 'f2', A, 1, 10, 'flex'), { granted: true });
  t.like(await acquireSeat(redis, q, c, 'f3', A, 1, 10, 'flex'), { granted: false });
  // An urgent request of any tenant finds the reserved seat.
  t.like(await acquireSeat(redis, q, c, 'u1', B, 1, 10), { granted: true, seatsInUse: 3 });
  // A freed seat goes to flex only when the reserve stays free.
  t.like(await releaseSeat(redis, q, c, 'u1'), { granted: 0, seatsInUse: 2 });
  t.like(await releaseSeat(redis, q, c, 'f1'), { grantedIds: ['f3'], seatsInUse: 2 });
});

test('flex: without a reserve flex work fills every idle seat', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 2, flexReserve: 0 });
  t.true((await acquireSeat(redis, q, c, 'f1', A, 1, 10, 'flex')).granted);
  t.true((await acquireSeat(redis, q, c, 'f2', A, 1, 10, 'flex')).granted);
  t.false((await acquireSeat(redis, q, c, 'u1', B, 1, 10)).granted);
  t.like(await releaseSeat(redis, q, c, 'f1'), { grantedIds: ['u1'] });
});

test('flex: shares across tenants follow the weights within the class', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  t.true((await acquireSeat(redis, q, c, 'blocker', C, 1, 1)).granted);
  for (let i = 0; i < 8; i++) await acquireSeat(redis, q, c, `a${i}`, A, 1, 10, 'flex');
  for (let i = 0; i < 8; i++) await acquireSeat(redis, q, c, `b${i}`, B, 3, 10, 'flex');
  const order: string[] = [];
  let holder = 'blocker';
  for (let i = 0; i < 8; i++) {
    const r = await releaseSeat(redis, q, c, holder);
    holder = r.grantedIds[0] ?? '';
    order.push(holder);
  }
  t.is(order.filter((id) => id.startsWith('b')).length, 6, order.join(' '));
  t.deepEqual(
    order.filter((id) => id.startsWith('a')),
    ['a0', 'a1'],
  );
});

test('flex: a flex waiter that gives up leaves the flex queue', async (t) => {
  const { redis, q } = await setup(t);
  const c = cap({ maxConcurrent: 1 });
  t.true((await acquireSeat(redis, q, c, 'blocker', C, 1, 1)).granted);
  t.false((await acquireSeat(redis, q, c, 'f', A, 1, 10, 'flex')).granted);
  t.like(await releaseSeat(redis, q, c, 'f'), { was: 'waiting', waiting: 0 });
  t.like(await releaseSeat(redis, q, c, 'blocker'), { granted: 0, seatsInUse: 0 });
});
