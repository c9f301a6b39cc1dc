/**
 * token-meter when Redis blips (a private, real redis-server, paused with CLIENT PAUSE so
 * every call misses its deadline): with `on_redis_unavailable: spool` the request is served
 * unchecked, its settlement spooled locally and replayed once Redis answers again —
 * nothing lost, nothing counted twice (a late settle and its replay meet on the request id).
 */
import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';
import { chat, eventually } from '../helpers/frontdoor';
import { startMeterDoor, totals, type UsageResult } from '../helpers/token-meter-door';
import { startPrivateRedis } from '../integration/private-redis';

test.serial('spool mode: a Redis pause loses no settlement and counts none twice', async (t) => {
  const server = await startPrivateRedis(t);
  const door = await startMeterDoor(t.teardown, {
    redis: { url: server.url, timeout_ms: 300 },
    on_redis_unavailable: 'spool',
    replay_interval_seconds: 1,
    spool_dir: mkdtempSync(path.join(tmpdir(), 'tm-spool-e2e-')),
  });
  const first = await door.call('globex', '/v1/chat/completions', { body: chat('before') });
  t.is(first.res.status, 200);
  t.is(first.res.headers['x-budget-state'], 'ok');

  const admin = createClient({ url: server.url });
  await admin.connect();
  t.teardown(() => admin.close());
  await admin.sendCommand(['CLIENT', 'PAUSE', '3000', 'ALL']);
  const during = await door.call('globex', '/v1/chat/completions', { body: chat('during') });
  t.is(during.res.status, 200, 'served while the budget store does not answer');
  t.is(during.res.headers['x-budget-state'], 'unchecked');
  const usageDuring = (
    during.res.json as { usage: { prompt_tokens: number; completion_tokens: number } }
  ).usage;
  const usageFirst = (
    first.res.json as { usage: { prompt_tokens: number; completion_tokens: number } }
  ).usage;

  const start = Math.floor(Date.now() / 1000) - 86_400;
  const results = await eventually(async () => {
    const { res } = await door.call(
      'globex',
      `/v1/organization/usage/completions?start_time=${start}&limit=2`,
    );
    if (res.status !== 200) return undefined;
    const r = (res.json as { data: Array<{ results: UsageResult[] }> }).data.flatMap(
      (b) => b.results,
    );
    return totals(r).n >= 2 ? r : undefined;
  }, 15_000);
  t.like(totals(results), {
    n: 2,
    input: usageFirst.prompt_tokens + usageDuring.prompt_tokens,
    output: usageFirst.completion_tokens + usageDuring.completion_tokens,
  });
});

test.serial(
  'refuse mode (the default): Redis unavailable is a 503 with Retry-After, nothing proxied',
  async (t) => {
    const server = await startPrivateRedis(t);
    const door = await startMeterDoor(t.teardown, { redis: { url: server.url, timeout_ms: 300 } });
    t.is((await door.call('globex', '/v1/chat/completions', { body: chat('up') })).res.status, 200);
    await server.stop();
    const { res, upstream } = await door.call('globex', '/v1/chat/completions', {
      body: chat('down'),
    });
    t.is(res.status, 503);
    t.is((res.json as { error: { code: string } }).error.code, 'budget_unavailable');
    t.is(res.headers['retry-after'], '2');
    t.is(upstream, undefined);
  },
);

test.serial(
  'refuse mode: a reserve whose reply misses its deadline is released by request id, not held until its TTL',
  async (t) => {
    const server = await startPrivateRedis(t);
    const door = await startMeterDoor(t.teardown, { redis: { url: server.url, timeout_ms: 300 } });
    t.is((await door.call('globex', '/v1/chat/completions', { body: chat('up') })).res.status, 200);
    const admin = createClient({ url: server.url });
    await admin.connect();
    t.teardown(() =>
      admin.quit().then(
        () => undefined,
        () => undefined,
      ),
    );
    const blocker = createClient({ url: server.url });
    await blocker.connect();
    t.teardown(() =>
      blocker.quit().then(
        () => undefined,
        () => undefined,
      ),
    );
    const budget = createKeyspace(door.namespace).budget(
      parseTenantId('globex'),
      periodAt('month', Date.now()).id,
    );

    // Redis busy for 1.5 s (a script holds it): the reserve queues behind it, its reply comes
    // after the 300 ms deadline, but the script itself runs once Redis is free.
    const busy = blocker.eval(
      `local t0 = redis.call('TIME'); local s = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
       while true do
         local t = redis.call('TIME')
         if tonumber(t[1]) * 1000000 + tonumber(t[2]) - s > 1500000 then break end
       end
       return 1`,
    );
    await new Promise((r) => setTimeout(r, 100));
    const { res, upstream } = await door.call('globex', '/v1/chat/completions', {
      body: chat('while busy'),
    });
    t.is(res.status, 503, res.text);
    t.is((res.json as { error: { code: string } }).error.code, 'budget_unavailable');
    t.is(upstream, undefined);
    await busy;

    // Released, not held for reservation_ttl_seconds (600 s): nothing reserved, nothing billed.
    await eventually(async () => {
      const h = await admin.hGetAll(budget);
      const open = Object.keys(h).filter((k) => k.startsWith('r:'));
      return open.length === 0 && Number(h.reserved_tokens ?? 0) === 0 ? true : undefined;
    }, 10_000);
    const h = await admin.hGetAll(budget);
    t.is(Number(h.reserved_tokens ?? 0), 0);
    t.is(Number(h.reserved_cost ?? 0), 0);
  },
);
