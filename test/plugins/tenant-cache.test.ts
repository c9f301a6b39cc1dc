/**
 * tenant-cache end to end: key-auth, tenant-auth and tenant-cache in real plugin servers, the
 * real Redis (random key namespace), the mock upstream recording what reached it. Serial: the
 * tests count stores, metrics and upstream calls of shared tenants.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { apiError, send, startFrontDoor } from '../helpers/frontdoor';
import {
  CACHE_CONSUMERS,
  CACHE_PLANS,
  apikey,
  detChat,
  eventually,
  metric,
  sharedCacheDoor,
  type CacheDoor,
} from '../helpers/cache-door';
import { freePort, startPrivateRedis } from '../integration/private-redis';

const door = sharedCacheDoor(test);

const STORES = 'tenant_cache_stores_total';
const REQUESTS = 'tenant_cache_requests_total';

/** Sends on /v1 as `tenant` and waits until log has decided about storing (a miss or refresh). */
async function sendSettled(
  d: CacheDoor,
  tenant: string,
  body: unknown,
  headers: Array<[string, string]> = [],
  pathname = '/v1/chat/completions',
) {
  const before = await metric(d, STORES, { tenant });
  const r = await d.call(pathname, {
    headers: [...apikey(`${tenant}-key`), ...headers],
    body: body as object,
  });
  const cache = r.res.headers['x-cache-status'];
  if (cache === 'MISS' || (cache === 'BYPASS' && headers.length > 0)) {
    await eventually(
      'the store outcome',
      async () => (await metric(d, STORES, { tenant })) > before,
    );
  }
  return r;
}

test.serial(
  'a deterministic chat is a MISS, then a HIT served without calling the upstream',
  async (t) => {
    const d = door();
    const body = detChat('what is a hash tag');
    const first = await sendSettled(d, 'acme', body);
    t.is(first.res.status, 200);
    t.is(first.res.headers['x-cache-status'], 'MISS');
    t.truthy(first.upstream, 'the miss reached the upstream');

    const second = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body });
    t.is(second.res.status, 200);
    t.is(second.res.headers['x-cache-status'], 'HIT');
    t.is(second.upstream, undefined, 'a hit never reaches the upstream');
    t.regex(String(second.res.headers['content-type']), /^application\/json/);
    t.regex(String(second.res.headers.age), /^\d+$/);
    t.deepEqual(second.res.json, first.res.json, 'the same answer');
  },
);

test.serial(
  'token-meter’s place in the chain sees tenant_cache_status in log: miss, then hit after the exit',
  async (t) => {
    const d = door();
    const body = detChat('status contract');
    const miss = await sendSettled(d, 'acme', body);
    const hit = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body });
    t.is(hit.res.headers['x-cache-status'], 'HIT');
    const bypass = await d.call('/v1/models', { headers: apikey('acme-key') });
    const seen = async (res: typeof miss.res): Promise<string | null | undefined> => {
      const id = String(res.headers['x-kong-request-id']);
      let status: string | null | undefined;
      await eventually(`the probe's log line for ${id}`, async () => {
        const lines = readFileSync(d.statusFile, 'utf8').trim().split('\n').filter(Boolean);
        const mine = lines
          .map((l) => JSON.parse(l) as { id: string; status: string | null })
          .find((e) => e.id === id);
        status = mine?.status;
        return mine !== undefined;
      });
      return status;
    };
    t.is(await seen(miss.res), 'miss');
    t.is(await seen(hit.res), 'hit');
    t.is(await seen(bypass.res), 'bypass');
  },
);

test.serial(
  'spellings of the same request share one entry: key order, escapes, numbers, whitespace, explicit defaults',
  async (t) => {
    const d = door();
    const prompt = `canonical ${Date.now()}`;
    await sendSettled(d, 'acme', {
      model: 'gpt-4o-mini',
      temperature: 0,
      messages: [{ role: 'user', content: prompt }],
    });
    const escaped = prompt.replace(/[a-z]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
    const variants = [
      `{"messages":[{"content":"${prompt}","role":"user"}],"temperature":0.0,"model":"gpt-4o-mini"}`,
      `{ "model" : "gpt-4o-mini", "temperature" : 0e0,\n "messages" : [ { "role":"user", "content":"${escaped}" } ] }`,
      `{"model":"gpt-4o-mini","temperature":-0,"stream":false,"n":1,"messages":[{"role":"user","content":"${prompt}"}]}`,
    ];
    for (const raw of variants) {
      const r = await d.call('/v1/chat/completions', {
        headers: [...apikey('acme-key'), ['content-type', 'application/json']],
        body: raw,
      });
      t.is(r.res.headers['x-cache-status'], 'HIT', raw);
      t.is(r.upstream, undefined);
    }
    // A different value is a different request.
    const other = await d.call('/v1/chat/completions', {
      headers: apikey('acme-key'),
      body: {
        model: 'gpt-4o-mini',
        temperature: 0,
        messages: [{ role: 'user', content: `${prompt}.` }],
      },
    });
    t.is(other.res.headers['x-cache-status'], 'MISS');
  },
);

test.serial(
  'not cacheable: no temperature, a streamed chat (streams through as SSE), a GET, duplicate keys',
  async (t) => {
    const d = door();
    const noTemp = await d.call('/v1/chat/completions', {
      headers: apikey('acme-key'),
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'warm' }] },
    });
    t.is(noTemp.res.headers['x-cache-status'], 'BYPASS');
    t.truthy(noTemp.upstream);

    const body = detChat('streamed', { stream: true });
    for (let i = 0; i < 2; i++) {
      const s = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body });
      t.is(s.res.status, 200);
      t.is(s.res.headers['x-cache-status'], 'BYPASS');
      t.regex(String(s.res.headers['content-type']), /^text\/event-stream/);
      t.true(s.res.text.includes('data: [DONE]'));
      t.truthy(s.upstream, 'every streamed request goes upstream');
    }

    const get = await d.call('/v1/models', { headers: apikey('acme-key') });
    t.is(get.res.status, 200);
    t.is(get.res.headers['x-cache-status'], 'BYPASS');

    const p = `dup ${Date.now()}`;
    const dup = `{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"${p}"}],"temperature":1}`;
    for (let i = 0; i < 2; i++) {
      const r = await d.call('/v1/chat/completions', {
        // umbrella's plan has no body policy: tenant-auth forwards the client's bytes (on a
        // plan with one it re-serialises the body, and the last duplicate wins before us).
        headers: [...apikey('umbrella-key'), ['content-type', 'application/json']],
        body: dup,
      });
      t.is(r.res.headers['x-cache-status'], 'BYPASS');
    }
    t.true((await metric(d, REQUESTS, { tenant: 'umbrella', reason: 'duplicate_keys' })) >= 2);
    t.true((await metric(d, REQUESTS, { tenant: 'acme', reason: 'stream' })) >= 2);
  },
);

test.serial(
  'Cache-Control: no-store is never stored; no-cache goes upstream and refreshes the entry',
  async (t) => {
    const d = door();
    const body = detChat('no-store');
    const entriesBefore = (await d.entries('acme')).length;
    for (let i = 0; i < 2; i++) {
      const r = await d.call('/v1/chat/completions', {
        headers: [...apikey('acme-key'), ['cache-control', 'no-store']],
        body,
      });
      t.is(r.res.headers['x-cache-status'], 'BYPASS');
      t.truthy(r.upstream);
    }
    t.is((await d.entries('acme')).length, entriesBefore, 'no-store wrote nothing');

    const fresh = detChat('no-cache');
    await sendSettled(d, 'acme', fresh);
    const refresh = await sendSettled(d, 'acme', fresh, [['cache-control', 'no-cache']]);
    t.is(refresh.res.headers['x-cache-status'], 'BYPASS');
    t.truthy(refresh.upstream, 'no-cache is answered by the upstream');
    const hit = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body: fresh });
    t.is(hit.res.headers['x-cache-status'], 'HIT');
    t.deepEqual(hit.res.json, refresh.res.json, 'the refreshed answer is the one served');
    const pragma = await sendSettled(d, 'acme', fresh, [['pragma', 'no-cache']]);
    t.truthy(pragma.upstream, 'Pragma: no-cache is answered by the upstream too');
    t.notDeepEqual(pragma.res.json, refresh.res.json);
  },
);

test.serial(
  'a 200 served by another model than asked is not stored; neither is an error',
  async (t) => {
    const d = door();
    const body = detChat('downgrade', { model: 'gpt-4o' });
    const downgraded = JSON.stringify({
      id: 'chatcmpl-downgraded',
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'cheap answer' },
          finish_reason: 'stop',
        },
      ],
    });
    d.upstream.configure({ failure: { mode: 'status', status: 200, body: downgraded, count: 1 } });
    const before = await metric(d, STORES, { tenant: 'acme', outcome: 'model_mismatch' });
    const r1 = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body });
    t.is(r1.res.status, 200);
    t.is((r1.res.json as { model: string }).model, 'gpt-4o-mini');
    await eventually(
      'the model_mismatch outcome',
      async () => (await metric(d, STORES, { tenant: 'acme', outcome: 'model_mismatch' })) > before,
    );
    const r2 = await sendSettled(d, 'acme', body);
    t.is(r2.res.headers['x-cache-status'], 'MISS', 'the downgrade was not replayed');
    t.is((r2.res.json as { model: string }).model, 'gpt-4o');

    const errBody = detChat('upstream error');
    d.upstream.configure({ failure: { mode: 'status', status: 500, count: 1 } });
    const e1 = await sendSettled(d, 'acme', errBody);
    t.is(e1.res.status, 500);
    const e2 = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body: errBody });
    t.is(e2.res.status, 200);
    t.is(e2.res.headers['x-cache-status'], 'MISS');
    t.true((await metric(d, STORES, { tenant: 'acme', outcome: 'status' })) >= 1);
    d.upstream.configure({ failure: null });
  },
);

test.serial('embeddings are cached', async (t) => {
  const d = door();
  const body = { model: 'text-embedding-3-small', input: [`embed me ${Date.now()}`] };
  const first = await sendSettled(d, 'globex', body, [], '/v1/embeddings');
  t.is(first.res.headers['x-cache-status'], 'MISS');
  const second = await d.call('/v1/embeddings', { headers: apikey('globex-key'), body });
  t.is(second.res.headers['x-cache-status'], 'HIT');
  t.deepEqual(second.res.json, first.res.json);
});

test.serial('a gzip-compressed upstream answer is stored decoded and served decoded', async (t) => {
  const d = door();
  const body = detChat('gzip');
  const callsBefore = d.gzipCalls();
  const before = await metric(d, REQUESTS, { tenant: 'acme', status: 'hit' });
  const first = await d.call('/gz/v1/chat/completions', {
    headers: [...apikey('acme-key'), ['accept-encoding', 'gzip']],
    body,
  });
  t.is(first.res.headers['x-cache-status'], 'MISS');
  let hit: Awaited<ReturnType<CacheDoor['call']>> | undefined;
  await eventually('a hit on the gzip route', async () => {
    hit = await d.call('/gz/v1/chat/completions', { headers: apikey('acme-key'), body });
    return hit.res.headers['x-cache-status'] === 'HIT';
  });
  t.is(hit?.res.headers['content-encoding'], undefined);
  t.like(hit?.res.json, {
    choices: [{ message: { content: `gzipped answer ${callsBefore + 1}` } }],
  });
  t.true((await metric(d, REQUESTS, { tenant: 'acme', status: 'hit' })) >= before);
});

test.serial('TTL per plan; a plan can turn caching off or cache warmer temperatures', async (t) => {
  const d = door();
  // initech is on `free`: plans.free.ttl_seconds = 60 on /v1; acme (pro) has the default 300.
  const before = new Set(await d.entries('initech'));
  await sendSettled(d, 'initech', detChat('ttl'));
  const added = (await d.entries('initech')).filter((k) => !before.has(k));
  t.is(added.length, 1);
  const ttl = await d.redis.ttl(added[0] as string);
  t.true(ttl > 0 && ttl <= 60, `ttl ${ttl}`);

  // /warm: free caches temperature up to 1, pro is off.
  const warm = detChat('warm', { temperature: 0.7 });
  const w1 = await d.call('/warm/v1/chat/completions', {
    headers: apikey('initech-key'),
    body: warm,
  });
  t.is(w1.res.headers['x-cache-status'], 'MISS');
  await eventually('a warm hit', async () => {
    const w = await d.call('/warm/v1/chat/completions', {
      headers: apikey('initech-key'),
      body: warm,
    });
    return w.res.headers['x-cache-status'] === 'HIT';
  });
  const off = await d.call('/warm/v1/chat/completions', {
    headers: apikey('acme-key'),
    body: detChat('off'),
  });
  t.is(off.res.headers['x-cache-status'], 'BYPASS');
  t.pass();
});

test.serial('status_header off: misses carry no X-Cache-Status, hits still do', async (t) => {
  const d = door();
  const body = detChat('quiet');
  const first = await d.call('/nostatus/v1/chat/completions', {
    headers: apikey('acme-key'),
    body,
  });
  t.is(first.res.status, 200);
  t.is(first.res.headers['x-cache-status'], undefined);
  await eventually('a quiet hit', async () => {
    const r = await d.call('/nostatus/v1/chat/completions', { headers: apikey('acme-key'), body });
    return r.res.headers['x-cache-status'] === 'HIT';
  });
  t.pass();
});

test.serial('without a master secret the cache is off and traffic flows', async (t) => {
  const d = door();
  const body = detChat('no key');
  for (let i = 0; i < 2; i++) {
    const r = await d.call('/nokey/v1/chat/completions', { headers: apikey('acme-key'), body });
    t.is(r.res.status, 200);
    t.is(r.res.headers['x-cache-status'], 'BYPASS');
    t.truthy(r.upstream);
  }
});

test.serial(
  'a route without tenant-auth: refused 500 tenant_context_missing, not forwarded',
  async (t) => {
    const d = door();
    const r = await d.call('/untenanted/v1/chat/completions', {
      headers: apikey('acme-key'),
      body: detChat('untenanted'),
    });
    t.is(r.res.status, 500);
    t.like(apiError(r.res), { type: 'server_error', code: 'tenant_context_missing' });
    t.is(r.upstream, undefined);
  },
);

test('Redis down or paused: a miss with a metric, never an error; back up: cached again', async (t) => {
  const redis = await startPrivateRedis(t);
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const fd = await startFrontDoor(t.teardown, (upstreamUrl) => ({
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
      },
    ],
    plugins: [
      { name: 'key-auth', route: 'ai' },
      { name: 'tenant-auth', route: 'ai', config: { plans: CACHE_PLANS } },
      {
        name: 'tenant-cache',
        route: 'ai',
        config: {
          redis: { url: redis.url, timeout_ms: 150 },
          metrics_port: metricsPort,
          ephemeral_key_when_missing: true,
          master_key_env: 'KTA_TEST_CACHE_KEY_UNSET',
        },
      },
    ],
    consumers: CACHE_CONSUMERS,
  }));
  const body = detChat('outage');
  const go = () => send(`${fd.url}/v1/chat/completions`, { headers: apikey('acme-key'), body });
  const miss = await go();
  t.is(miss.status, 200);
  await eventually(
    'a hit before the outage',
    async () => (await go()).headers['x-cache-status'] === 'HIT',
  );

  // Slow: the server accepts commands and answers after the deadline.
  const { createClient } = await import('redis');
  const admin = createClient({ url: redis.url });
  await admin.connect();
  await admin.sendCommand(['CLIENT', 'PAUSE', '1500', 'ALL']);
  const slow = await go();
  t.is(slow.status, 200);
  t.is(slow.headers['x-cache-status'], 'MISS');
  t.is((slow.json as { object: string }).object, 'chat.completion');
  await admin.close().catch(() => undefined);

  await redis.stop();
  for (let i = 0; i < 3; i++) {
    const down = await go();
    t.is(down.status, 200);
    t.is(down.headers['x-cache-status'], 'MISS');
  }
  t.true(
    (await metric({ metricsUrl }, 'tenant_cache_redis_failures_total', { op: 'lookup' })) >= 4,
  );
  t.true(
    (await metric({ metricsUrl }, REQUESTS, { tenant: 'acme', reason: 'redis_unavailable' })) >= 4,
  );

  // Back up (an empty Redis on the same port): the client reconnects by itself.
  await startPrivateRedis(t, redis.port);
  await eventually('a miss that is stored again', async () => {
    await go();
    return (await go()).headers['x-cache-status'] === 'HIT';
  });
  t.pass();
});
