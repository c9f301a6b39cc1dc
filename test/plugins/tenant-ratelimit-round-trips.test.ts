/**
 * tenant-ratelimit's Redis round trips per request, counted on the wire: the plugin's Redis
 * URL points at a proxy in front of the real Redis that counts turns (a batch of commands
 * written together before any reply is one; test/helpers/redis-turns-proxy.ts), and checked
 * against the plugin's own tenant_ratelimit_redis_round_trips_total by phase. Issue 8's
 * target: at most 2 on the unqueued path (a free seat, nobody waiting): the tenant limits and
 * the fair queue's acquire go out together in access, the settle and the release together in
 * log. A request its tenant's limits refuse pays one more in access (the ticket's cancel) and
 * leaves nothing in the queue.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import { createKeyspace } from '../../lib/redis/keys';
import { Closers, apiError, eventually, send } from '../helpers/frontdoor';
import { REDIS_URL, startRatelimitDoor, type RatelimitDoor } from '../helpers/ratelimit-door';
import { startTurnsProxy, type TurnsProxy } from '../helpers/redis-turns-proxy';
import { freePort } from '../helpers/upstreams';

const run = randomBytes(3).toString('hex');
const ns = (route: string) => `rt-${run}-${route}`;
const QUEUE = { upstream: 'llm', max_concurrent: 4, max_wait_ms: 5000 };
/** A tenant tokens limit with a concurrency-only queue: the log's usage matters to the lease. */
const FREE_LIMITS = { requests_per_minute: 600, tokens_per_minute: 200000, max_concurrent: 4 };

let door: RatelimitDoor | undefined;
let proxy: TurnsProxy | undefined;
let metricsUrl = '';
const closers = new Closers();
test.before(async () => {
  proxy = await startTurnsProxy(REDIS_URL);
  closers.add(() => proxy?.close());
  const metricsPort = await freePort();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const route = (name: string, config: Record<string, unknown>) => ({
    name,
    config: {
      ...config,
      metrics_port: metricsPort,
      redis: { url: proxy?.url, key_namespace: ns(name), timeout_ms: 2000 },
    },
  });
  door = await startRatelimitDoor(closers.add, [
    route('queued', { plans: { free: FREE_LIMITS }, queue: QUEUE }),
    route('tokens', {
      plans: { free: FREE_LIMITS },
      queue: { ...QUEUE, tokens_per_minute: 5_000_000 },
    }),
    route('limits', { plans: { free: FREE_LIMITS } }),
    route('claim', { queue: { upstream: 'llm', max_concurrent: 1, max_wait_ms: 8000 } }),
    route('refused', {
      plans: { free: { requests_per_minute: 1, request_burst: 1 } },
      queue: QUEUE,
    }),
  ]);
});
test.after.always(() => closers.closeAll());

const GLOBEX = 'globex-key';

async function roundTrips(): Promise<Record<string, number>> {
  const text = (await send(metricsUrl)).text;
  const out: Record<string, number> = { access: 0, queue: 0, log: 0 };
  for (const m of text.matchAll(
    /^tenant_ratelimit_redis_round_trips_total\{phase="(\w+)"\} (\d+)/gm,
  )) {
    out[m[1] ?? ''] = Number(m[2]);
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function lateClaims(): Promise<number> {
  const text = (await send(metricsUrl)).text;
  const m = /^tenant_ratelimit_late_claims_total\{upstream="llm"\} (\d+)/m.exec(text);
  return Number(m?.[1] ?? 0);
}

/**
 * One request on `route`, then the wire's turns and the metric's round trips it caused, once
 * its log phase has run (the turns stop growing).
 */
async function measure(route: string, expectStatus: number) {
  const p = proxy as TurnsProxy;
  const before = p.turns();
  const metricBefore = await roundTrips();
  const { res } = await (door as RatelimitDoor).call(route, GLOBEX);
  if (res.status !== expectStatus) throw new Error(`${route}: status ${res.status} ${res.text}`);
  // Log runs after the response: wait until the turns have been still for a while.
  let last = -1;
  for (let i = 0; i < 40 && p.turns() !== last; i++) {
    last = p.turns();
    await sleep(150);
  }
  const after = await roundTrips();
  return {
    res,
    wire: p.turns() - before,
    access: (after.access ?? 0) - (metricBefore.access ?? 0),
    queue: (after.queue ?? 0) - (metricBefore.queue ?? 0),
    log: (after.log ?? 0) - (metricBefore.log ?? 0),
  };
}

test.serial('warm-up: the plugin server connects and loads its scripts', async (t) => {
  // The first requests pay for connecting (HELLO, CLIENT SETINFO) and loading the scripts.
  // Each route's plugin instance also opens its grant listener (a subscriber connection).
  for (const route of ['queued', 'tokens', 'limits']) {
    t.is((await (door as RatelimitDoor).call(route, GLOBEX)).res.status, 200);
  }
  // Another tenant, so that globex's one request on `refused` is still there.
  t.is((await (door as RatelimitDoor).call('refused', 'acme-key')).res.status, 200);
  t.is((await (door as RatelimitDoor).call('claim', 'acme-key')).res.status, 200);
  await sleep(300);
  t.true((proxy as TurnsProxy).turns() > 0);
});

for (const route of ['queued', 'tokens']) {
  test.serial(`unqueued path (${route}): 2 round trips, access 1 and log 1`, async (t) => {
    for (let i = 0; i < 3; i++) {
      const m = await measure(route, 200);
      t.is(m.res.headers['x-queue-wait-ms'], '0');
      t.is(m.wire, 2, `request ${i}: turns on the wire`);
      t.like(m, { access: 1, queue: 0, log: 1 });
    }
  });
}

test.serial('without a queue: 2 round trips, access 1 and log 1', async (t) => {
  const m = await measure('limits', 200);
  t.is(m.wire, 2);
  t.like(m, { access: 1, queue: 0, log: 1 });
});

test.serial(
  'refused by its own limits: the ticket is cancelled (one more round trip), nothing is left queued',
  async (t) => {
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    t.teardown(() => redis.close());
    const q = createKeyspace(ns('refused')).fairQueue('llm');
    t.is((await measure('refused', 200)).wire, 2);
    const tagBefore = await redis.zScore(q.tags, 'globex');
    t.not(tagBefore, null);
    const m = await measure('refused', 429);
    t.is(apiError(m.res).code, 'tenant_requests_per_minute_exceeded');
    t.is(m.wire, 2, 'limits + acquire, then the cancel; no log round trip');
    t.like(m, { access: 2, queue: 0, log: 0 });
    t.is(await redis.zCard(q.seats), 0, 'no seat held');
    t.is(await redis.zCard(q.waiting), 0, 'nobody waiting');
    const tag = await redis.zScore(q.tags, 'globex');
    t.true(
      tag === null || tag <= (tagBefore ?? 0),
      `the refused request did not move globex's finish tag (${tagBefore} -> ${tag})`,
    );
  },
);

async function rememberedRefusals(): Promise<number> {
  const text = (await send(metricsUrl)).text;
  const m = /^tenant_ratelimit_remembered_refusals_total\{tenant="globex"\} (\d+)/m.exec(text);
  return Number(m?.[1] ?? 0);
}

test.serial(
  'refused again while its requests bucket is empty: answered from memory, no round trip',
  async (t) => {
    // Right after the refusal above: the bucket (one a minute) holds no request for a minute.
    const before = await rememberedRefusals();
    for (let i = 0; i < 3; i++) {
      const m = await measure('refused', 429);
      t.like(apiError(m.res), {
        type: 'rate_limit_error',
        code: 'tenant_requests_per_minute_exceeded',
      });
      t.true(Number(m.res.headers['retry-after']) >= 1);
      t.regex(String(m.res.headers.ratelimit), /^"rpm";r=0;t=\d+$/);
      t.is(m.wire, 0, `request ${i}: nothing sent to Redis`);
      t.like(m, { access: 0, queue: 0, log: 0 });
    }
    t.is(await rememberedRefusals(), before + 3);
  },
);

test.serial(
  'a waiter granted a seat goes on at once and its claim makes the seat a full lease',
  async (t) => {
    const d = door as RatelimitDoor;
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    t.teardown(() => redis.close());
    const q = createKeyspace(ns('claim')).fairQueue('llm');
    const lateBefore = await lateClaims();
    d.upstream.configure({ latencyMs: 1500 });
    t.teardown(() => d.upstream.configure({ latencyMs: 0 }));
    const holder = d.call('claim', GLOBEX);
    await eventually(async () => ((await redis.zCard(q.seats)) === 1 ? true : undefined));
    const waiter = d.call('claim', 'acme-key');
    await eventually(async () => ((await redis.zCard(q.waiting)) === 1 ? true : undefined));
    t.is((await holder).res.status, 200);
    // The holder's log granted the seat to the waiter (a claim window of 2 s); the waiter
    // went on and claimed it: while it is at the upstream its seat is a full lease (180 s).
    const leased = await eventually(async () => {
      const seats = await redis.zRangeWithScores(q.seats, 0, -1);
      const seat = seats[0];
      return seat && seat.score - Date.now() > 60_000 ? seat : undefined;
    });
    t.truthy(leased);
    const w = await waiter;
    t.is(w.res.status, 200);
    t.true(Number(w.res.headers['x-queue-wait-ms']) > 0, 'the waiter did wait');
    t.is(await lateClaims(), lateBefore, 'no claim came too late');
    await eventually(async () => ((await redis.zCard(q.seats)) === 0 ? true : undefined));
    t.is(await redis.zCard(q.waiting), 0);
  },
);
