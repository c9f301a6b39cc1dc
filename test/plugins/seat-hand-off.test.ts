/**
 * The upstream seat is taken where the upstream is chosen (lib/request/seat.ts): on kong.yml's
 * chain, co-hosted, tenant-ratelimit admits a request against its tenant's limits and leaves the
 * shared upstream's seat to circuit-breaker, which takes it once it has routed the request. So,
 * with the one seat of the shared upstream held by a slow request:
 * - a cache hit is answered at once: it never takes or waits for a seat;
 * - a tenant routed to its own deployment (kong.yml's pro plan → `pro-deployment`) is served:
 *   it does not wait for the shared upstream's seats;
 * - a miss routed to the shared upstream (the free plan, the route's own service) waits and,
 *   the seat still held at the end of its wait, gets 503 `upstream_saturated` (the control:
 *   the seat really is held, and taken by the chain).
 * Before the move, the hit and the pro request waited for the held seat like the miss.
 * And when circuit-breaker leaves the route, tenant-ratelimit takes the seat itself again.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { HarnessGateway } from '../../harness/gateway';
import type { KongGateway } from '../../kong-runner/index';
import { apiError, eventually, gatewayKind, send, type Sent } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';
import { freePort } from '../helpers/upstreams';

const HOLD_MS = 6000;
const MAX_WAIT_MS = 1000;

test('a cache hit and a request routed to its own deployment never wait for the shared seat', async (t) => {
  const door = await startKongYmlDoor(
    (fn) => t.teardown(fn),
    (p) => {
      if (p.name === 'tenant-ratelimit' && p.config) {
        // One seat of the shared upstream (`llm`), and a short wait for it.
        p.config.queue = {
          upstream: 'llm',
          max_concurrent: 1,
          tokens_per_minute: 0,
          max_wait_ms: MAX_WAIT_MS,
        };
      }
    },
    [],
    [],
    { service: { read_timeout: HOLD_MS } },
  );
  const run = randomBytes(4).toString('hex');
  const chat = (key: string, question: string): Promise<Sent> =>
    send(`${door.url}/v1/chat/completions`, {
      headers: [
        ['apikey', key],
        ['content-type', 'application/json'],
      ],
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        temperature: 0,
        messages: [{ role: 'user', content: `${question} (${run})` }],
      }),
    });
  const FREE = 'globex-demo-key'; // plan free: the route's own service, the shared upstream
  const PRO = 'acme-demo-key'; // plan pro: circuit-breaker routes it to pro-deployment

  // A cached answer for the free tenant; circuit-breaker has now run on the route.
  const first = await chat(FREE, 'what is a seat');
  t.is(first.status, 200, first.text);
  await eventually(
    async () =>
      (await chat(FREE, 'what is a seat')).headers['x-cache-status'] === 'HIT' || undefined,
    15_000,
  );
  // The pro tenant's route works (and warms its plugins) before the seat is held.
  t.is((await chat(PRO, 'warm up')).status, 200);

  // Hold the one seat: a free miss the upstream never answers; Kong gives up on it after the
  // service's read timeout (HOLD_MS), and its log phase gives the seat back.
  door.upstream.configure({
    failure: { mode: 'timeout', pathPrefix: '/v1/chat/completions', count: 1 },
  });
  const holderStarted = Date.now();
  const holder = chat(FREE, 'hold the seat');
  await eventually(
    () =>
      door.upstream.received.some(
        (r) =>
          r.path.startsWith('/v1/chat/completions') && r.rawBody.includes(`hold the seat (${run})`),
      ) || undefined,
    10_000,
  );

  const [hit, pro, miss] = await Promise.all([
    chat(FREE, 'what is a seat'),
    chat(PRO, 'a question of my own deployment'),
    chat(FREE, 'a fresh question'),
  ]);
  const checkedBy = Date.now() - holderStarted;
  t.true(checkedBy < HOLD_MS, `the probes ended while the seat was held (${checkedBy} ms)`);

  t.is(hit.status, 200, hit.text);
  t.is(hit.headers['x-cache-status'], 'HIT');
  t.is(hit.headers['x-queue-wait-ms'], undefined, 'a hit never entered the fair queue');

  t.is(pro.status, 200, `served by its own deployment, no shared seat: ${pro.text}`);
  t.is(pro.headers['x-queue-wait-ms'], undefined);

  t.is(miss.status, 503, `the control waited for the held seat: ${miss.text}`);
  t.is(apiError(miss).code, 'upstream_saturated');

  const held = await holder;
  t.is(held.status, 504, `Kong gave up on the holder: ${held.text}`);
  // The seat went back in the holder's log phase.
  const after = await chat(FREE, 'after the hold');
  t.is(after.status, 200, after.text);
});

test('circuit-breaker removed from the route: tenant-ratelimit takes the seat at admission again after one request', async (t) => {
  const onKong = gatewayKind() === 'kong';
  const admin = await freePort();
  const door = await startKongYmlDoor(
    (fn) => t.teardown(fn),
    (p) => {
      if (p.name === 'tenant-ratelimit' && p.config) {
        p.config.queue = { upstream: 'llm', max_concurrent: 4, tokens_per_minute: 0 };
      }
    },
    [],
    [],
    onKong ? { kongConf: { admin_listen: `127.0.0.1:${admin}` } } : {},
  );
  const run = randomBytes(4).toString('hex');
  let n = 0;
  // Never cached (temperature 1): every request goes to the upstream.
  const ask = (): Promise<Sent> =>
    send(`${door.url}/v1/chat/completions`, {
      headers: [
        ['apikey', 'globex-demo-key'],
        ['content-type', 'application/json'],
      ],
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        temperature: 1,
        messages: [{ role: 'user', content: `question ${(n += 1)} (${run})` }],
      }),
    });
  // With circuit-breaker on the route, it takes the seats: the header comes from its phase.
  for (let i = 0; i < 3; i += 1) {
    const r = await ask();
    t.is(r.status, 200, r.text);
    t.is(r.headers['x-queue-wait-ms'], '0');
  }

  // The same config without circuit-breaker (Kong: the Admin API's POST /config).
  type Doc = { plugins: Array<{ name: string }> } & Record<string, unknown>;
  const base = (
    onKong
      ? JSON.parse(
          readFileSync(path.join((door.gateway as KongGateway).prefix, 'kong.json'), 'utf8'),
        )
      : structuredClone(door.config)
  ) as Doc;
  const without = { ...base, plugins: base.plugins.filter((p) => p.name !== 'circuit-breaker') };
  if (onKong) {
    const r = await send(`http://127.0.0.1:${admin}/config`, { method: 'POST', body: without });
    t.is(r.status, 201, r.text.slice(0, 500));
  } else {
    await (door.gateway as HarnessGateway).reload(without);
  }

  // Every request still answered; at most one went without a seat (its hand-off never taken),
  // then the seat is taken at admission again: the header is back.
  const statuses: number[] = [];
  const unseated: number[] = [];
  await eventually(async () => {
    const r = await ask();
    statuses.push(r.status);
    if (r.headers['x-queue-wait-ms'] === undefined) unseated.push(statuses.length);
    return (r.status === 200 && r.headers['x-queue-wait-ms'] === '0') || undefined;
  }, 30_000);
  t.deepEqual([...new Set(statuses)], [200]);
  t.true(unseated.length <= 1, `requests without a seat after the change: ${unseated.join(', ')}`);
});
