/**
 * Cross-plugin isolation eval, performance: the field's reported limit and breaker bugs, on the
 * whole kong.yml chain with tenant A seeded everywhere (its breaker open, its budget drained):
 * - APISIX #12896: one consumer's token limit reached, another consumer with the same limit was
 *   refused too (the limit acted globally);
 * - Envoy AI Gateway #2460: per-tenant quota rules counted in Redis but never enforced;
 * - LiteLLM PR #40002: four of five concurrent requests admitted over a concurrency cap;
 * - LiteLLM #27639: reservations never released after a node died mid-stream (a phantom
 *   reservation that refuses the tenant until someone resets Redis): a stream cut by the
 *   client, and a node killed mid-stream (its reservation ends by its TTL: billed then, once,
 *   as estimated, since the upstream had the request; no longer held);
 * - A's open breaker and dedicated upstream never reach B (no 503, no header, no routing).
 * Serial: the cases share the slow upstream and measure caps.
 */
import http from 'node:http';
import test, { type ExecutionContext } from 'ava';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';
import { nothingOfA } from '../helpers/chain-assert';
import { sharedChainFixture, type ChainFixture, type ChainTenant } from '../helpers/chain-fixture';
import { metricAt } from '../helpers/semantic-door';

// Two gateway nodes on one Redis: the second dies mid-stream in the last case.
const fx = sharedChainFixture(test, 2);

const code = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;
const chat = (f: ChainFixture, who: ChainTenant, content: string, extra: object = {}) =>
  f.as(who, '/v1/chat/completions', {
    body: {
      model: 'gpt-4o-mini',
      temperature: 1,
      max_tokens: 20,
      messages: [{ role: 'user', content }],
      ...extra,
    },
  });
const keys = (f: ChainFixture, plugin: 'rl' | 'tm') =>
  createKeyspace(`${f.door.namespace}${plugin}`);
async function until(what: string, probe: () => Promise<boolean>, everyMs = 100): Promise<void> {
  const deadline = Date.now() + 40_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * B did not wait in the fair queue: `X-Queue-Wait-Ms: 0` (it took a free seat at once), or no
 * header at all (kong.yml routes B's plan to its own deployment, and circuit-breaker takes no
 * seat of the shared upstream for it: lib/request/seat.ts). Anything else is a wait.
 */
function notQueued(t: ExecutionContext, header: string | string[] | undefined, why: string): void {
  t.true(header === undefined || header === '0', `${why} (X-Queue-Wait-Ms: ${String(header)})`);
}

test.serial(
  'A’s open breaker and dedicated upstream: B is never refused, routed or told',
  async (t) => {
    const f = fx();
    const labels = { upstream: 'a-dedicated', tenant: f.A.id };
    t.is(
      await metricAt(f.breakerMetrics, 'circuit_breaker_state', labels),
      1,
      'control: A’s breaker is open',
    );
    const before = f.upstreams.dedicated.received.length;
    for (let i = 0; i < 5; i++) {
      const p = await chat(f, f.B, `breaker probe ${i}`);
      t.is(p.res.status, 200);
      t.is(p.res.headers['retry-after'], undefined);
      notQueued(t, p.res.headers['x-queue-wait-ms'], 'B did not wait behind anything of A’s');
      t.deepEqual(p.upstreamNames, ['main']);
      nothingOfA(t, f, p);
    }
    t.is(f.upstreams.dedicated.received.length, before, 'nothing of B’s on A’s dedicated upstream');
    t.is(await metricAt(f.breakerMetrics, 'circuit_breaker_state', { tenant: f.B.id }), 0);
  },
);

test.serial(
  'APISIX #12896: one tenant’s token limit reached refuses that tenant only',
  async (t) => {
    const f = fx();
    const { X, Y } = f.limits;
    const big = 'lorem '.repeat(2000);
    t.is((await chat(f, X, big)).res.status, 200);
    const refused = await chat(f, X, big);
    t.is(refused.res.status, 429, 'control: X’s own limit is reached');
    t.is(code(refused.res.text), 'tenant_tokens_per_minute_exceeded');
    t.truthy(refused.res.headers['retry-after']);
    // Y: the same per-tenant limit, its own bucket; B: another plan-level limit.
    for (const who of [Y, Y, f.B]) {
      const p = await chat(f, who, who === Y ? big.slice(0, 6000) : big);
      t.is(p.res.status, 200, `${who.id}: ${p.res.text.slice(0, 200)}`);
      nothingOfA(t, f, p, who);
    }
    const k = keys(f, 'rl');
    t.not(k.rateBucket(parseTenantId(X.id), 'tokens'), k.rateBucket(parseTenantId(Y.id), 'tokens'));
    t.is(await f.redis.exists(k.rateBucket(parseTenantId(Y.id), 'tokens')), 1, 'Y counted apart');
  },
);

test.serial(
  'Envoy AI Gateway #2460: a per-tenant request quota is counted and enforced',
  async (t) => {
    const f = fx();
    const { Z } = f.limits;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await chat(f, Z, `quota ${i}`)).res.status);
    t.deepEqual(statuses, [200, 200, 429], 'the third request of a 2-request quota is refused');
    const again = await chat(f, Z, 'quota again');
    t.is(again.res.status, 429);
    t.is(code(again.res.text), 'tenant_requests_per_minute_exceeded');
    t.is(await f.redis.exists(keys(f, 'rl').rateBucket(parseTenantId(Z.id), 'requests')), 1);
    // B, same plan without the override: its own bucket, untouched by Z's.
    for (let i = 0; i < 4; i++) {
      const p = await chat(f, f.B, `quota of B ${i}`);
      t.is(p.res.status, 200);
      nothingOfA(t, f, p);
    }
  },
);

test.serial(
  'LiteLLM PR #40002: five concurrent requests under a cap of one admit exactly one',
  async (t) => {
    const f = fx();
    const { C } = f.limits;
    const k = keys(f, 'rl');
    for (let round = 0; round < 2; round++) {
      const burst = await Promise.all(
        Array.from({ length: 5 }, (_, i) => chat(f, C, `burst ${round} ${i}`)),
      );
      const ok = burst.filter((p) => p.res.status === 200);
      const refused = burst.filter((p) => p.res.status === 429);
      t.is(ok.length, 1, `round ${round}: one admitted`);
      t.is(refused.length, 4);
      for (const p of refused) t.is(code(p.res.text), 'tenant_concurrency_exceeded');
      t.is(
        f.upstreams.slow.received.filter((r) => r.headers['x-tenant-id'] === C.id).length,
        round + 1,
      );
      await until(
        'C’s lease released',
        async () => (await f.redis.zCard(k.concurrencyLeases(parseTenantId(C.id)))) === 0,
      );
    }
    // While C holds its one seat on the slow upstream, B sends five at once: all served at once.
    const held = chat(f, C, 'held');
    await until('C in flight', async () => f.upstreams.slow.stats().inFlight === 1);
    const b = await Promise.all(Array.from({ length: 5 }, (_, i) => chat(f, f.B, `b burst ${i}`)));
    for (const p of b) {
      t.is(p.res.status, 200);
      notQueued(t, p.res.headers['x-queue-wait-ms'], 'B did not wait behind C’s held seat');
      nothingOfA(t, f, p);
    }
    t.is((await held).res.status, 200);
  },
);

test.serial(
  'LiteLLM #27639: a stream cut mid-way releases its reservation; none outlives its TTL',
  async (t) => {
    const f = fx();
    const { W } = f.limits;
    const w = parseTenantId(W.id);
    const period = periodAt('month', Date.now()).id;
    const reservations = keys(f, 'tm').budgetReservations(w, period);
    const leases = keys(f, 'rl').concurrencyLeases(w);
    const body = JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      max_tokens: 40,
      messages: [{ role: 'user', content: 'stream a long answer about the weather please' }],
    });
    const req = http.request(`${f.door.url}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: {
        apikey: W.key,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    const firstChunk = new Promise<void>((resolve, reject) => {
      req.on('response', (res) => res.once('data', () => resolve()));
      req.on('error', reject);
    });
    req.end(body);
    await firstChunk;
    // Mid-stream: the reservation and the lease exist, each with an expiry a dead node would hit.
    const now = Date.now();
    const held = await f.redis.zRangeWithScores(reservations, 0, -1);
    t.is(held.length, 1, 'W’s reservation is held while it streams');
    t.true((held[0]?.score ?? Infinity) <= now + f.reservationTtl * 1000 + 5000, 'and expires');
    const lease = await f.redis.zRangeWithScores(leases, 0, -1);
    t.is(lease.length, 1);
    t.true((lease[0]?.score ?? Infinity) < now + 3_600_000, 'the lease expires too');
    req.destroy(); // the client goes away mid-stream
    await until('the reservation released', async () => (await f.redis.zCard(reservations)) === 0);
    await until('the lease released', async () => (await f.redis.zCard(leases)) === 0);
    const next = await chat(f, W, 'after the cut');
    t.is(next.res.status, 200, 'W is served again: no phantom reservation');
    const b = await chat(f, f.B, 'meanwhile');
    t.is(b.res.status, 200);
    nothingOfA(t, f, b);
  },
);

/** Starts a streamed request of `who` on `url` and resolves once its first bytes arrived. */
function streamOn(url: string, who: ChainTenant, maxTokens: number): Promise<http.ClientRequest> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'stream a long answer about the weather please' }],
  });
  const req = http.request(`${url}/v1/chat/completions`, {
    method: 'POST',
    agent: false,
    headers: {
      apikey: who.key,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    },
  });
  return new Promise((resolve, reject) => {
    req.on('response', (res) => res.once('data', () => resolve(req)));
    req.on('error', reject);
    req.end(body);
  });
}

test.serial(
  'LiteLLM #27639: a node dies mid-stream; its reservation ends by its TTL, billed once',
  async (t) => {
    const f = fx();
    const { W } = f.limits;
    const period = periodAt('month', Date.now()).id;
    const meter = keys(f, 'tm');
    const reservations = meter.budgetReservations(parseTenantId(W.id), period);
    const expiryEntries = async () =>
      ((await f.redis.xRange(meter.usageLedger(parseTenantId(W.id), period), '-', '+')) ?? [])
        .map((e) => e.message as Record<string, string>)
        .filter((m) => m.settled_by === 'expiry');
    const remaining = async () => {
      const p = await chat(f, W, 'how much is left');
      t.is(p.res.status, 200);
      return Number(p.res.headers['x-budget-remaining-tokens']);
    };
    const full = await remaining();
    const node1 = f.door.gateways[1];
    if (!node1) throw new Error('the fixture has one node');
    const req = await streamOn(node1.url, W, 3000);
    req.on('error', () => undefined); // the node is about to drop the connection
    t.is(await f.redis.zCard(reservations), 1, 'W’s stream holds a reservation');
    await node1.kill(); // power loss: no log phase will ever settle it
    // The surviving node still counts the dead node's reservation (the reported symptom)…
    t.true((await remaining()) <= full - 2900, 'the phantom reservation is still counted');
    // …but only until its expiry, and nobody resets anything: then it is no longer held but
    // billed (the upstream had the request and the provider bills it), once, as estimated —
    // the prompt count and the 3000-token bound — marked settled_by expiry. The probes' own
    // reserves (and the plugin server's timer) sweep it.
    const dead = Date.now();
    await until(
      'the phantom billed',
      async () => (await remaining()) > 0 && (await expiryEntries()).length > 0,
      1000,
    );
    t.true(Date.now() - dead < (f.reservationTtl + 15) * 1000, 'within the reservation TTL');
    // (the last probe's own reservation ends with its log phase)
    await until(
      'the phantom gone from Redis',
      async () => (await f.redis.zCard(reservations)) === 0,
    );
    const billed = await expiryEntries();
    t.is(billed.length, 1, 'billed once');
    t.like(billed[0], { estimated: '1', completion: '3000', status: '0' });
    t.true((await remaining()) <= full - 2900, 'its estimate is used budget now, not given back');
    const b = await chat(f, f.B, 'after the node died');
    t.is(b.res.status, 200);
    nothingOfA(t, f, b);
  },
);
