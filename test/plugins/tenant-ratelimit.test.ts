/**
 * tenant-ratelimit end to end: key-auth -> tenant-auth -> tenant-ratelimit on the gateway,
 * the real Redis holding the limits and the queue, the mock upstream recording what reached
 * it. Each route has its own limits and its own key namespace.
 */
import test from 'ava';
import { estimateRequest } from '../../lib/tokens/estimate';
import { apiError } from '../helpers/frontdoor';
import {
  DEAD_REDIS_URL,
  chatBody,
  eventually,
  sharedRatelimitDoor,
} from '../helpers/ratelimit-door';

/** A request of a fixed width: the paced route's quota is five of them per second. */
const PACED_BODY = chatBody('hello', { max_tokens: 90 });
const PACED_WIDTH = estimateRequest(PACED_BODY).totalTokens;

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
  // One request a second, no burst: a refusal remembered ends by itself within that.
  { name: 'rpmfast', config: { default_limits: { requests_per_minute: 60, request_burst: 1 } } },
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
  {
    // The upstream's capacity declared as a quota: five requests' tokens per second, one at
    // once. A waiter that slept its whole poll interval would reach its max wait (503).
    name: 'paced',
    config: {
      queue: {
        tokens_per_minute: PACED_WIDTH * 300,
        token_burst: PACED_WIDTH,
        poll_interval_ms: 2000,
        max_wait_ms: 2000,
      },
    },
  },
  { name: 'untenanted', config: {}, tenantAuth: false },
  {
    name: 'usage',
    config: {
      default_limits: { tokens_per_minute: 3000 },
      estimate: { default_max_tokens: 1000 },
    },
    usage: 'v=1;prompt=10;completion=5;total=15;cached=0;model=gpt-4o-mini;from=json',
  },
  {
    name: 'refuse',
    config: { redis: { url: DEAD_REDIS_URL, timeout_ms: 100 }, on_redis_unavailable: 'refuse' },
  },
  {
    name: 'local',
    config: {
      redis: { url: DEAD_REDIS_URL, timeout_ms: 100 },
      on_redis_unavailable: 'local',
      default_limits: { requests_per_minute: 1, request_burst: 2 },
    },
  },
  {
    name: 'refuseq',
    config: {
      redis: { url: DEAD_REDIS_URL, timeout_ms: 100 },
      on_redis_unavailable: 'refuse',
      queue: { max_concurrent: 1 },
    },
  },
  {
    name: 'localq',
    config: {
      redis: { url: DEAD_REDIS_URL, timeout_ms: 100 },
      on_redis_unavailable: 'local',
      default_limits: { requests_per_minute: 1, request_burst: 2 },
      queue: { max_concurrent: 1, local_max_concurrent: 2 },
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
// Two requests are sent together: which one the gateway takes first is not ours to assume.
type Call = Awaited<ReturnType<ReturnType<typeof door>['call']>>;
function split(calls: Call[], admitted: (c: Call) => boolean): [Call, Call] {
  const first = calls.find(admitted);
  const other = calls.find((c) => c !== first);
  if (!first || !other) throw new Error(`statuses ${calls.map((c) => c.res.status).join(', ')}`);
  return [first, other];
}

test.serial(
  'concurrency cap: a second request in flight is refused, the first one frees its lease in log',
  async (t) => {
    door().upstream.configure({ latencyMs: 800 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const calls = await Promise.all([door().call('conc', GLOBEX), door().call('conc', GLOBEX)]);
    const [ok, refused] = split(calls, (c) => c.res.status === 200);
    t.truthy(ok.upstream);
    t.is(refused.res.status, 429);
    t.like(apiError(refused.res), {
      type: 'rate_limit_error',
      code: 'tenant_concurrency_exceeded',
    });
    t.truthy(refused.res.headers['retry-after']);
    t.is(refused.upstream, undefined);
    door().upstream.configure({ latencyMs: 0 });
    // The lease was released in log: the tenant gets in again.
    t.true(await eventually(async () => (await door().call('conc', GLOBEX)).res.status === 200));
  },
);

test.serial(
  'fair queue: a request waits for the busy upstream seat and says how long',
  async (t) => {
    door().upstream.configure({ latencyMs: 500 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const calls = await Promise.all([door().call('queue', GLOBEX), door().call('queue', ACME)]);
    t.deepEqual(
      calls.map((c) => c.res.status),
      [200, 200],
    );
    const [direct, waited] = split(calls, (c) => c.res.headers['x-queue-wait-ms'] === '0');
    t.true(Number(waited.res.headers['x-queue-wait-ms']) > 0, 'the other request waited');
    t.truthy(direct.upstream);
  },
);

test('a tokens capacity (a quota): waiters are admitted as the tokens come, before their max wait', async (t) => {
  const keys = [GLOBEX, ACME, GLOBEX, 'initech-key', GLOBEX];
  const calls = await Promise.all(keys.map((k) => door().call('paced', k, { body: PACED_BODY })));
  t.deepEqual(
    calls.map((c) => c.res.status),
    [200, 200, 200, 200, 200],
  );
  t.true(calls.every((c) => c.upstream !== undefined));
  // One request's tokens at once (then one every 200 ms): the others waited for theirs.
  const waited = calls.filter((c) => Number(c.res.headers['x-queue-wait-ms']) > 0);
  t.true(
    waited.length >= 2,
    `queue waits ${calls.map((c) => c.res.headers['x-queue-wait-ms']).join(', ')}`,
  );
});

test.serial(
  'saturated past the max wait: 503 upstream_saturated with Retry-After, and the waiter left',
  async (t) => {
    door().upstream.configure({ latencyMs: 1500 });
    t.teardown(() => door().upstream.configure({ latencyMs: 0 }));
    const calls = await Promise.all([
      door().call('saturated', GLOBEX),
      door().call('saturated', ACME),
    ]);
    const [, refused] = split(calls, (c) => c.res.status === 200);
    t.is(refused.res.status, 503);
    t.like(apiError(refused.res), { type: 'service_unavailable', code: 'upstream_saturated' });
    t.truthy(refused.res.headers['retry-after']);
    t.is(refused.upstream, undefined);
    door().upstream.configure({ latencyMs: 0 });
    // The gave-up waiter is gone and the seat came back: the next request goes straight through.
    t.true(
      await eventually(async () => {
        const r = await door().call('saturated', ACME);
        return r.res.status === 200 && r.res.headers['x-queue-wait-ms'] === '0';
      }),
    );
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

test('a refusal answered from memory ends when the requests bucket holds a request again', async (t) => {
  t.is((await door().call('rpmfast', GLOBEX)).res.status, 200);
  const started = Date.now();
  // Refused by Redis, then from memory (test/plugins/tenant-ratelimit-round-trips.test.ts
  // counts the round trips), never proxied.
  for (let i = 0; i < 2; i++) {
    const { res, upstream } = await door().call('rpmfast', GLOBEX);
    t.is(res.status, 429, `${Date.now() - started} ms after the admitted one`);
    t.is(apiError(res).code, 'tenant_requests_per_minute_exceeded');
    t.is(upstream, undefined);
  }
  // The bucket refills one request a second: admitted again then, not held back for the
  // memory's longest (5 s).
  let admitted = -1;
  for (let i = 0; i < 100 && admitted < 0; i++) {
    const r = await door().call('rpmfast', GLOBEX);
    if (r.res.status === 200) admitted = Date.now() - started;
    else await new Promise((res) => setTimeout(res, 50));
  }
  t.true(admitted > 0 && admitted < 2500, `admitted again after ${admitted} ms`);
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

test('a prompt that spells out special tokens is counted as text, not refused', async (t) => {
  // A pure-JS BPE encoder throws on "<|endoftext|>" by default: the estimate failed and every
  // such prompt (a question about tokenizers, or a hostile one) was a 500.
  const content = 'What does <|endoftext|> mean, and <|im_start|>system<|im_sep|>?';
  const body = chatBody(content, { max_tokens: 10 });
  // A free-plan tenant no other test sends to this route: its bucket starts full.
  const { res } = await door().call('tpm', 'lookalike-key', { body });
  t.is(res.status, 200);
  const left = Number(/"tpm";r=(\d+)/.exec(String(res.headers.ratelimit))?.[1]);
  // Charged exactly the estimate, which counts those characters as ordinary text.
  const width = estimateRequest(body).totalTokens;
  t.true(width > 10 + 20, `the special-token text counts as many tokens (width ${width})`);
  t.is(left, 3000 - width, String(res.headers.ratelimit));
});

test('a prompt of one long run (100 KB of "a") is estimated at once, not in 21 s of BPE merging', async (t) => {
  // Unbounded, counting it held tenant-ratelimit's plugin server (every tenant's requests)
  // for 21 s, and 1 MB made the tokenizer trap (a 500). Sliced runs: a count at once.
  const body = chatBody('a'.repeat(100_000), { max_tokens: 10 });
  const started = Date.now();
  const [big, other] = await Promise.all([
    door().call('open', ACME, { body }),
    // Another tenant's request sent meanwhile is answered too.
    new Promise((r) => setTimeout(r, 20)).then(() => door().call('open', GLOBEX)),
  ]);
  t.is(big.res.status, 200);
  t.is(other.res.status, 200);
  t.true(Date.now() - started < 8000, 'both answered well before the test times out');
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

test('Redis down, on_redis_unavailable=refuse: 503 ratelimit_unavailable, nothing proxied', async (t) => {
  const { res, upstream } = await door().call('refuse', GLOBEX);
  t.is(res.status, 503);
  t.like(apiError(res), { type: 'service_unavailable', code: 'ratelimit_unavailable' });
  t.is(res.headers['retry-after'], '1');
  t.is(upstream, undefined);
});

test('Redis down, on_redis_unavailable=local: a per-node limiter, announced, still limiting', async (t) => {
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

// With a queue, the limits and the queue's acquire go to Redis together: both fail together.
test('Redis down with a queue, on_redis_unavailable=refuse: 503 ratelimit_unavailable', async (t) => {
  const { res, upstream } = await door().call('refuseq', GLOBEX);
  t.is(res.status, 503);
  t.like(apiError(res), { type: 'service_unavailable', code: 'ratelimit_unavailable' });
  t.is(upstream, undefined);
});

test('Redis down with a queue, on_redis_unavailable=local: per-node limits and seats, announced', async (t) => {
  const statuses: number[] = [];
  const scopes: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    const { res } = await door().call('localq', 'initech-key');
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

test('log corrects the token charge to the observed usage (llm_usage): the unused estimate comes back', async (t) => {
  const left = (h: unknown) => Number(/"tpm";r=(-?\d+)/.exec(String(h))?.[1]);
  const first = await door().call('usage', GLOBEX);
  t.is(first.res.status, 200);
  const afterFirst = left(first.res.headers.ratelimit);
  const estimate = 3000 - afterFirst;
  t.true(estimate > 1000, `charged the estimate first (${estimate})`);
  // Once log has run, the bucket holds 3000 - 15 (used), minus the next estimate: without the
  // correction it would hold 3000 - 2 x estimate.
  t.true(
    await eventually(async () => {
      const r = await door().call('usage', GLOBEX);
      return left(r.res.headers.ratelimit) > afterFirst - estimate / 2;
    }),
  );
});
