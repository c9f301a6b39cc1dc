/**
 * tenant-ratelimit end to end: key-auth -> tenant-auth -> tenant-ratelimit on the gateway,
 * the real Redis holding the limits and the queue, the mock upstream recording what reached
 * it. Each route has its own limits and its own key namespace.
 */
import test from 'ava';
import { apiError } from '../helpers/frontdoor';
import {
  DEAD_REDIS_URL,
  chatBody,
  eventually,
  sharedRatelimitDoor,
} from '../helpers/ratelimit-door';

const door = sharedRatelimitDoor(test, [
  { name: 'open', config: {} },
  {
    name: 'rpm',
    config: { default_limits: { requests_per_minute: 1, request_burst: 3 } },
  },
  {
    name: 'tpm',
    config: {
      plans: { free: { tokens_per_minute: 3000 } },
      estimate: { default_max_tokens: 1000 },
    },
  },
  { name: 'conc', config: { default_limits: { max_concurrent: 1 } } },
  {
    name: 'override',
    config: {
      plans: { free: { requests_per_minute: 1, request_burst: 1 } },
      tenants: { initech: { request_burst: 3 } },
    },
  },
  { name: 'queue', config: { queue: { max_concurrent: 1, max_wait_ms: 10000 } } },
  {
    name: 'saturated',
    config: { queue: { max_concurrent: 1, max_wait_ms: 300, poll_interval_ms: 100 } },
  },
  { name: 'untenanted', config: {}, tenantAuth: false },
  {
    name: 'refuse',
    config: { redis: { url: DEAD_REDIS_URL, command_timeout_ms: 100 }, on_redis_error: 'refuse' },
  },
  {
    name: 'local',
    config: {
      redis: { url: DEAD_REDIS_URL, command_timeout_ms: 100 },
      on_redis_error: 'local',
      default_limits: { requests_per_minute: 1, request_burst: 2 },
    },
  },
  {
    name: 'broken',
    config: { default_limits: { tokens_per_minute: 0, token_burst: 10 } },
  },
]);

const GLOBEX = 'globex-key';
const ACME = 'acme-key';

// Serial tests change the mock upstream's latency; ava runs them before the concurrent ones.
test.serial(
  'concurrency cap: a second request in flight is refused, the first one frees its lease in log',
  async (t) => {
    door().upstream.configure({ latencyMs: 600 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const first = door().call('conc', GLOBEX);
    await new Promise((r) => setTimeout(r, 200));
    const second = await door().call('conc', GLOBEX);
    t.is(second.res.status, 429);
    t.like(apiError(second.res), { type: 'rate_limit_error', code: 'tenant_concurrency_exceeded' });
    t.truthy(second.res.headers['retry-after']);
    t.is(second.upstream, undefined);
    // Another tenant is not held by globex's cap.
    const other = await door().call('conc', ACME);
    t.is(other.res.status, 200);
    t.is((await first).res.status, 200);
    door().upstream.configure({ latencyMs: 0 });
    t.true(await eventually(async () => (await door().call('conc', GLOBEX)).res.status === 200));
  },
);

test.serial(
  'fair queue: a request waits for the busy upstream seat and says how long',
  async (t) => {
    door().upstream.configure({ latencyMs: 500 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const first = door().call('queue', GLOBEX);
    await new Promise((r) => setTimeout(r, 150));
    const second = await door().call('queue', ACME);
    t.is(second.res.status, 200);
    t.true(Number(second.res.headers['x-queue-wait-ms']) > 0, 'the second request waited');
    const f = await first;
    t.is(f.res.status, 200);
    t.is(f.res.headers['x-queue-wait-ms'], '0');
  },
);

test.serial(
  'saturated past the max wait: 503 upstream_saturated with Retry-After, and the waiter left',
  async (t) => {
    door().upstream.configure({ latencyMs: 1200 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const first = door().call('saturated', GLOBEX);
    await new Promise((r) => setTimeout(r, 150));
    const second = await door().call('saturated', ACME);
    t.is(second.res.status, 503);
    t.like(apiError(second.res), { type: 'service_unavailable', code: 'upstream_saturated' });
    t.truthy(second.res.headers['retry-after']);
    t.is(second.upstream, undefined);
    t.is((await first).res.status, 200);
    door().upstream.configure({ latencyMs: 0 });
    // The gave-up waiter is gone and the seat came back: the next request goes straight through.
    t.true(
      await eventually(async () => {
        const r = await door().call('saturated', ACME);
        return r.res.status === 200 && r.res.headers['x-queue-wait-ms'] === '0';
      }),
    );
    // acme's concurrency lease and its token charge were handed back: nothing leaked.
  },
);

test('an admitted request reaches the upstream with RateLimit headers and a queue-wait header', async (t) => {
  const { res, upstream } = await door().call('rpm', ACME);
  t.is(res.status, 200);
  t.truthy(upstream);
  t.is(res.headers['ratelimit-policy'], '"rpm";q=1;w=60');
  t.regex(String(res.headers.ratelimit), /^"rpm";r=2;t=\d+$/);
  t.is(res.headers['x-queue-wait-ms'], undefined, 'no queue on this route');
});

test('requests per minute: past the burst, 429 with Retry-After and the IETF headers, nothing proxied', async (t) => {
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await door().call('rpm', GLOBEX)).res.status);
  t.deepEqual(statuses, [200, 200, 200]);
  const { res, upstream } = await door().call('rpm', GLOBEX);
  t.is(res.status, 429);
  t.like(apiError(res), {
    type: 'rate_limit_error',
    code: 'tenant_requests_per_minute_exceeded',
    param: null,
  });
  t.true(Number(res.headers['retry-after']) >= 1);
  t.is(res.headers['ratelimit-policy'], '"rpm";q=1;w=60');
  t.regex(String(res.headers.ratelimit), /^"rpm";r=0;t=\d+$/);
  t.regex(String(res.headers['content-type']), /application\/json/);
  t.is(upstream, undefined);
});

test('tokens per minute: charged with the estimate (max_tokens), refused when the bucket cannot cover it', async (t) => {
  const big = chatBody('hi', { max_tokens: 2000 });
  const first = await door().call('tpm', GLOBEX, { body: big });
  t.is(first.res.status, 200);
  t.regex(String(first.res.headers['ratelimit-policy']), /"tpm";q=3000;w=60/);
  const left = Number(/"tpm";r=(\d+)/.exec(String(first.res.headers.ratelimit))?.[1]);
  t.true(left < 1000, `about 3000 - 2000 - prompt tokens left, got ${left}`);
  const second = await door().call('tpm', GLOBEX, { body: big });
  t.is(second.res.status, 429);
  t.is(apiError(second.res).code, 'tenant_tokens_per_minute_exceeded');
  // A small request still fits what is left.
  const small = await door().call('tpm', GLOBEX, { body: chatBody('hi', { max_tokens: 10 }) });
  t.is(small.res.status, 200);
});

test('a request without a usable body still has a defined cost', async (t) => {
  const { res } = await door().call('tpm', 'initech-key', { body: null, pathname: '/v1/models' });
  t.is(res.status, 200);
  const left = Number(/"tpm";r=(\d+)/.exec(String(res.headers.ratelimit))?.[1]);
  t.is(left, 3000 - 256 - 1000, 'unknown_prompt_tokens + default_max_tokens');
});

test('per-tenant override: one tenant gets a bigger burst than its plan', async (t) => {
  const burst = async (key: string) => {
    const s: number[] = [];
    for (let i = 0; i < 4; i++) s.push((await door().call('override', key)).res.status);
    return s;
  };
  t.deepEqual(await burst('initech-key'), [200, 200, 200, 429]);
  t.deepEqual(await burst(GLOBEX), [200, 429, 429, 429]);
});

test('without tenant-auth on the route it refuses: 500 tenant_context_missing, nothing proxied', async (t) => {
  const { res, upstream } = await door().call('untenanted', GLOBEX);
  t.is(res.status, 500);
  t.is(apiError(res).code, 'tenant_context_missing');
  t.is(upstream, undefined);
});

test('Redis down, on_redis_error=refuse: 503 ratelimit_unavailable, nothing proxied', async (t) => {
  const { res, upstream } = await door().call('refuse', GLOBEX);
  t.is(res.status, 503);
  t.like(apiError(res), { type: 'service_unavailable', code: 'ratelimit_unavailable' });
  t.is(res.headers['retry-after'], '1');
  t.is(upstream, undefined);
});

test('Redis down, on_redis_error=local: a per-node limiter, announced, still limiting', async (t) => {
  const statuses: number[] = [];
  const scopes: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    const { res } = await door().call('local', ACME);
    statuses.push(res.status);
    scopes.push(res.headers['x-ratelimit-scope']);
  }
  t.deepEqual(statuses, [200, 200, 429]);
  t.deepEqual(scopes, ['local-node', 'local-node', 'local-node']);
});

test('a config that breaks a cross-field rule refuses with 500 plugin_misconfigured', async (t) => {
  const { res, upstream } = await door().call('broken', GLOBEX);
  t.is(res.status, 500);
  t.is(apiError(res).code, 'plugin_misconfigured');
  t.is(upstream, undefined);
});

test('no limits configured: requests pass, without RateLimit headers', async (t) => {
  const { res, upstream } = await door().call('open', GLOBEX);
  t.is(res.status, 200);
  t.truthy(upstream);
  t.is(res.headers.ratelimit, undefined);
});
