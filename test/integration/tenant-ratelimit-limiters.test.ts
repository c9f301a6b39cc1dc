/**
 * tenant-ratelimit's two limiters behind one interface (plugins/tenant-ratelimit/limiters/):
 * the cluster one on the real Redis and the per-node one keep the same contract (the same
 * limits, the lease and its settle, the seats), and the policy table's `attempt` moves to the
 * per-node limiter, or refuses with the 503, only when Redis is unreachable.
 */
import test, { type ExecutionContext } from 'ava';
import { isGatewayError } from '../../lib/http/errors';
import type { KongPdk } from '../../lib/pdk/kong';
import { closeAllRedis, createRedis, type RedisClient } from '../../lib/redis/client';
import type { UpstreamCapacity } from '../../lib/redis/fair-queue';
import type { TenantLimits } from '../../plugins/tenant-ratelimit/tenant-limits';
import { readConfig } from '../../lib/schema/config';
import { Limiters, type Limiter } from '../../plugins/tenant-ratelimit/limiters/limiter';
import { NodeLimiter } from '../../plugins/tenant-ratelimit/limiters/node';
import { RedisLimiter } from '../../plugins/tenant-ratelimit/limiters/redis';
import { LocalNodeLimiter } from '../../plugins/tenant-ratelimit/local-limiter';
import { Schema } from '../../plugins/tenant-ratelimit/schema';
import type { Ticket } from '../../plugins/tenant-ratelimit/ticket';
import { tenantContextOf } from '../helpers/tenant-context';
import { connectRedis, deleteKeyspace, randomKeyspace } from './services';

/** The grant listener's subscribers (duplicates of the client), closed at the end. */
const subscribers: RedisClient[] = [];
test.after.always(async () => {
  for (const sub of subscribers) sub.destroy();
  await closeAllRedis();
});

/** The shared client, with the duplicates it makes remembered. */
function tracked(redis: RedisClient): RedisClient {
  return new Proxy(redis, {
    get(target, prop) {
      if (prop === 'duplicate') {
        return () => {
          const sub = target.duplicate();
          subscribers.push(sub);
          return sub;
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const SEAT_LEASE_MS = 60_000;
const config = readConfig(Schema, {
  queue: { max_concurrent: 1, max_wait_ms: 300, poll_interval_ms: 50 },
  flex: { reserved_seats: 0 },
});
const capacity: UpstreamCapacity = {
  maxConcurrent: 1,
  tokensPerMinute: 0,
  tokenBurst: 0,
  seatLeaseMs: SEAT_LEASE_MS,
  heartbeatMs: 2000,
};

const limits = (over: Partial<TenantLimits> = {}): TenantLimits => ({
  requestsPerMinute: 0,
  requestBurst: 0,
  tokensPerMinute: 0,
  tokenBurst: 0,
  maxConcurrent: 0,
  ...over,
});

let n = 0;
function ticket(l: TenantLimits, width = 10, waitMs = 300): Ticket {
  const ctx = tenantContextOf('tenant-a');
  const started = Date.now();
  return {
    ctx,
    tenant: ctx.tenantId,
    limits: l,
    lease: `lease-${process.pid}-${++n}`,
    width,
    serviceClass: 'urgent',
    tenantLabel: 'tenant-a',
    started,
    deadline: started + waitMs,
    leaseTtlMs: waitMs + SEAT_LEASE_MS,
  };
}

async function cluster(t: ExecutionContext): Promise<Limiter> {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keys));
  return new RedisLimiter(tracked(redis), keys, keys.fairQueue('llm'), capacity, config.queue);
}

const local = (): Promise<Limiter> =>
  Promise.resolve(new NodeLimiter(config, SEAT_LEASE_MS, new LocalNodeLimiter()));

const kinds = { cluster, local } as const;

for (const kind of ['cluster', 'local'] as const) {
  const make = kinds[kind];
  test(`${kind}: a concurrency cap holds until the lease is settled`, async (t) => {
    const limiter = await make(t);
    const l = limits({ maxConcurrent: 1 });
    const first = ticket(l);
    t.true((await limiter.admit(first, false)).decision.allowed);
    const refused = (await limiter.admit(ticket(l), false)).decision;
    t.false(refused.allowed);
    t.is(refused.refusedBy, 'concurrency');
    await limiter.settle(first, 0, 'log');
    t.true((await limiter.admit(ticket(l), false)).decision.allowed);
  });

  test(`${kind}: a token charge corrected by settle is what the next request sees`, async (t) => {
    const limiter = await make(t);
    const l = limits({ tokensPerMinute: 100, tokenBurst: 100 });
    const first = ticket(l, 80);
    t.true((await limiter.admit(first, false)).decision.allowed);
    const over = (await limiter.admit(ticket(l, 80), false)).decision;
    t.false(over.allowed);
    t.is(over.refusedBy, 'tokens');
    // It used 10 tokens, not its estimate of 80: 70 come back.
    await limiter.settle(first, -70, 'log');
    t.true((await limiter.admit(ticket(l, 80), false)).decision.allowed);
  });

  test(`${kind}: one seat is given once, and again after its release`, async (t) => {
    const limiter = await make(t);
    const holder = ticket(limits());
    const seated = await limiter.seat(holder, null);
    t.is(seated.seat, kind);
    t.is(seated.scope, kind);
    const none = await limiter.seat(ticket(limits(), 10, 150), null);
    t.is(none.seat, null);
    t.true(none.retryAfterSeconds >= 1);
    await limiter.releaseSeat(holder.lease, 0);
    t.is((await limiter.seat(ticket(limits()), null)).seat, kind);
  });
}

test('cluster: the first round trip enters the queue beside the limits, and cancel gives the seat back', async (t) => {
  const limiter = await cluster(t);
  const refusedLater = ticket(limits());
  const entry = await limiter.admit(refusedLater, true);
  t.true(entry.decision.allowed);
  t.true(entry.first?.ok === true && entry.first.result.granted);
  await limiter.cancel(refusedLater, entry.first);
  // The one seat is free again: a newcomer is granted at once.
  const next = await limiter.admit(ticket(limits()), true);
  t.true(next.first?.ok === true && next.first.result.granted);
});

const warned: string[] = [];
const kong = {
  log: { warn: (m: string) => Promise.resolve(void warned.push(m)) },
} as unknown as KongPdk;

function unreachable(): Limiter {
  const redis = createRedis({ url: 'redis://127.0.0.1:1', commandTimeoutMs: 100 });
  const keys = randomKeyspace();
  return new RedisLimiter(redis, keys, keys.fairQueue('llm'), capacity, config.queue);
}

test('attempt: Redis unreachable and on_redis_unavailable local, the per-node limiter answers', async (t) => {
  const node = await local();
  const table = new Limiters(unreachable(), node, 'local');
  const r = await table.attempt(kong, 'access', table.cluster, (l) =>
    l.admit(ticket(limits()), true),
  );
  t.is(r.limiter, node);
  t.true(r.value.decision.allowed);
  t.is(r.value.first, null);
  t.is(table.of('local'), node);
  t.is(table.of('cluster'), table.cluster);
});

test('attempt: Redis unreachable and on_redis_unavailable refuse, the 503 ratelimit_unavailable', async (t) => {
  const table = new Limiters(unreachable(), await local(), 'refuse');
  const err = await t.throwsAsync(
    table.attempt(kong, 'access', table.cluster, (l) => l.admit(ticket(limits()), false)),
  );
  t.true(isGatewayError(err));
  t.like(isGatewayError(err) ? err.spec : {}, { status: 503, code: 'ratelimit_unavailable' });
  t.true(warned.some((m) => m.includes('Redis unavailable')));
});

test('attempt: an error that is not an outage is not hidden by the per-node limiter', async (t) => {
  const redis = await connectRedis();
  const keys = randomKeyspace();
  const table = new Limiters(
    new RedisLimiter(redis, keys, keys.fairQueue('llm'), capacity, config.queue),
    await local(),
    'local',
  );
  let calls = 0;
  const err = await t.throwsAsync(
    table.attempt(kong, 'access', table.cluster, () => {
      calls++;
      return Promise.reject(new Error('a bug, not an outage'));
    }),
  );
  t.is(err?.message, 'a bug, not an outage');
  t.is(calls, 1);
});

test('local: per-node buckets are kept per key namespace, as Redis keys are', async (t) => {
  const inNamespace = (ns: string) =>
    new NodeLimiter(readConfig(Schema, { redis: { key_namespace: ns } }), SEAT_LEASE_MS);
  const ns = `ns-${process.pid}-${Date.now()}`;
  const tight = limits({ requestsPerMinute: 1, requestBurst: 1 });
  t.true((await inNamespace(`${ns}-a`).admit(ticket(tight))).decision.allowed);
  // Kong recreates instances: a new one in the same namespace sees the spent bucket.
  t.false((await inNamespace(`${ns}-a`).admit(ticket(tight))).decision.allowed);
  // Another namespace (another deployment sharing the node) has its own.
  t.true((await inNamespace(`${ns}-b`).admit(ticket(tight))).decision.allowed);
});
