/**
 * circuit-breaker's pure parts: outcome classification, the guarded cockatiel breaker, the
 * tenant bulkheads with their queue timeout and slot TTL, routing from the TenantContext.
 */
import test from 'ava';
import { createTenantContext } from '../../lib/tenant/context';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { readConfig } from '../../lib/schema/config';
import { UpstreamBreaker, type StateName } from '../../plugins/circuit-breaker/breakers';
import { Bulkheads } from '../../plugins/circuit-breaker/bulkheads';
import { decodeLogFacts, factsFromSerialized } from '../../lib/pluginserver/log-facts';
import { classify, lastUpstreamStatus, verdictOf } from '../../plugins/circuit-breaker/outcome';
import { breakerKey, resolveRoute } from '../../plugins/circuit-breaker/routing';
import { Schema, checkConfig, type BreakerConfig } from '../../plugins/circuit-breaker/schema';

const config = (raw: Record<string, unknown> = {}) => readConfig(Schema, raw);
const breakerConfig = (b: Partial<BreakerConfig> = {}): BreakerConfig => ({
  ...config().breaker,
  ...b,
});
const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('classify: who answered decides whether the upstream failed', (t) => {
  const c = breakerConfig();
  const f = (source: string, status: number, upstreamStatus = '', proxyLatencyMs = 10) =>
    classify({ source, status, upstreamStatus, proxyLatencyMs, requestLatencyMs: -1 }, c);
  t.is(f('service', 200, '200'), 'success');
  t.is(f('service', 404, '404'), 'success');
  t.is(f('service', 500, '500'), 'upstream_5xx');
  t.is(f('service', 429, '429'), 'upstream_429');
  t.is(f('error', 502, '502'), 'upstream_unreachable');
  t.is(f('error', 504, '504'), 'upstream_timeout');
  t.is(f('error', 500), 'kong_error', 'a Kong error before any upstream attempt');
  t.is(f('exit', 503), 'refused_by_plugin', "another plugin's 503 is not the upstream's");
  t.is(f('service', 200, '502, 200'), 'success', 'the last try decides');
  t.is(
    classify(
      {
        source: 'service',
        status: 200,
        upstreamStatus: '200',
        proxyLatencyMs: 900,
        requestLatencyMs: 950,
      },
      breakerConfig({ slow_call_ms: 500 }),
    ),
    'upstream_slow',
  );
});

test('verdicts: 429 is not a failure unless configured; refusals prove nothing', (t) => {
  t.is(verdictOf('upstream_429', breakerConfig()).kind, 'none');
  t.is(verdictOf('upstream_429', breakerConfig({ count_429_as_failure: true })).kind, 'failure');
  t.is(verdictOf('refused_by_plugin', breakerConfig()).kind, 'none');
  t.is(verdictOf('lost', breakerConfig()).kind, 'none');
  t.is(verdictOf('upstream_timeout', breakerConfig()).kind, 'failure');
  t.is(lastUpstreamStatus(''), null);
  t.is(lastUpstreamStatus('502 : 504'), 504);
});

test('factsFromSerialized reads what Kong serializes, and survives garbage', (t) => {
  const s = JSON.stringify({
    request: { id: 'abc' },
    response: { status: 504 },
    upstream_status: '504',
    latencies: { proxy: -1, request: 60012 },
    source: 'kong', // the serializer's name, which cannot tell an error from an exit
  });
  t.deepEqual(factsFromSerialized(s), {
    requestId: 'abc',
    status: 504,
    source: null,
    upstreamStatus: '504',
    proxyLatencyMs: -1,
    requestLatencyMs: 60012,
  });
  t.is(factsFromSerialized('not json').requestId, null);
});

test('the saved log facts read as the serializer does, and only the snippet table counts', (t) => {
  // What lib/pluginserver/pdk-log-facts.lua saves (its LuaJIT test: pdk-batch-snippet.test.ts).
  const saved = {
    request_id: 'abc',
    status: 200,
    source: 'service',
    upstream_status: '502, 200',
    proxy_latency: 12,
    request_latency: 15,
  };
  const facts = decodeLogFacts(saved);
  t.deepEqual(facts, {
    requestId: 'abc',
    status: 200,
    source: 'service',
    upstreamStatus: '502, 200',
    proxyLatencyMs: 12,
    requestLatencyMs: 15,
  });
  // The same classification the serializer's facts would give.
  t.is(classify({ ...facts!, source: facts!.source ?? '' }, breakerConfig()), 'success');
  t.is(decodeLogFacts({ ...saved, upstream_status: 503 })?.upstreamStatus, '503');
  t.is(decodeLogFacts({ ...saved, request_id: '' })?.requestId, null);
  // Not the snippet's table (absent, a string, no status): the caller asks the serializer.
  t.is(decodeLogFacts(null), null);
  t.is(decodeLogFacts('x'), null);
  t.is(decodeLogFacts({ request_id: 'abc' }), null);
});

function breaker(b: Partial<BreakerConfig> = {}) {
  const seen: StateName[] = [];
  const br = new UpstreamBreaker('k', 'up', '*', breakerConfig(b), {
    transition: (_b, to) => seen.push(to),
  });
  return { br, seen };
}

async function fail(br: UpstreamBreaker, n: number) {
  for (let i = 0; i < n; i++) {
    const a = br.admit();
    if (!a.admitted) throw new Error('refused');
    a.settle({ kind: 'failure', reason: 'upstream_5xx' });
    await tick();
  }
}

test('consecutive breaker: opens after N failures and refuses with the time to half-open', async (t) => {
  const { br, seen } = breaker({ consecutive_failures: 3, half_open_after_ms: 60_000 });
  await fail(br, 2);
  const ok = br.admit();
  t.true(ok.admitted);
  if (ok.admitted) ok.settle({ kind: 'success' });
  await tick();
  await fail(br, 2);
  t.is(br.state, 'closed', 'a success resets the count');
  await fail(br, 1);
  t.is(br.state, 'open');
  t.deepEqual(seen, ['open']);
  const r = br.admit();
  t.false(r.admitted);
  if (!r.admitted) {
    t.is(r.state, 'open');
    t.true(r.retryAfterMs > 59_000 && r.retryAfterMs <= 60_000);
  }
});

test('requests without a verdict do not move a closed breaker', async (t) => {
  const { br } = breaker({ consecutive_failures: 2 });
  for (let i = 0; i < 5; i++) {
    const a = br.admit();
    if (a.admitted) a.settle({ kind: 'none', reason: 'refused_by_plugin' });
    await tick();
  }
  t.is(br.state, 'closed');
});

test('half-open: one probe; everyone else refused at once, not kept waiting', async (t) => {
  const { br, seen } = breaker({ consecutive_failures: 1, half_open_after_ms: 100 });
  await fail(br, 1);
  await sleep(120);
  const probe = br.admit();
  t.true(probe.admitted);
  if (!probe.admitted) return;
  t.true(probe.probe);
  t.is(br.state, 'half_open');
  const other = br.admit();
  t.false(other.admitted);
  if (!other.admitted) t.is(other.state, 'half_open');
  probe.settle({ kind: 'success' });
  await tick();
  t.is(br.state, 'closed');
  t.deepEqual(seen, ['open', 'half_open', 'closed']);
});

test('half-open: a probe that proved nothing reopens instead of closing', async (t) => {
  const { br } = breaker({ consecutive_failures: 1, half_open_after_ms: 50 });
  await fail(br, 1);
  await sleep(70);
  const probe = br.admit();
  if (!probe.admitted) return t.fail('the probe was refused');
  probe.settle({ kind: 'none', reason: 'refused_by_plugin' });
  await tick();
  t.is(br.state, 'open');
});

test('sampling breaker opens on the failure rate', async (t) => {
  const { br } = breaker({
    kind: 'sampling',
    sampling_threshold: 0.5,
    sampling_duration_ms: 5000,
    sampling_minimum_rps: 0.1,
  });
  for (let i = 0; i < 20 && br.state === 'closed'; i++) {
    const a = br.admit();
    if (a.admitted) a.settle({ kind: 'failure', reason: 'upstream_5xx' });
    await tick();
  }
  t.is(br.state, 'open');
});

const A = parseTenantId('alpha');
const B = parseTenantId('bravo');

test('bulkhead: per tenant; the queue times out; release frees the slot', async (t) => {
  const b = new Bulkheads();
  const s1 = await b.acquire(A, 1, 1, 50, 60_000);
  t.true(s1.ok);
  const queued = b.acquire(A, 1, 1, 50, 60_000);
  const full = await b.acquire(A, 1, 1, 50, 60_000);
  t.deepEqual(full, { ok: false, reason: 'full' });
  t.deepEqual(await queued, { ok: false, reason: 'queue_timeout' });
  const other = await b.acquire(B, 1, 1, 50, 60_000);
  t.true(other.ok, "B's compartment is its own");
  if (s1.ok) s1.slot.release();
  await tick();
  // the abandoned queue entry got the slot and handed it straight back
  await tick();
  const again = await b.acquire(A, 1, 1, 50, 60_000);
  t.true(again.ok);
  t.deepEqual(b.usage(A), { inFlight: 1, queued: 0 });
});

test('bulkhead: a slot whose release never comes expires after its TTL', async (t) => {
  const b = new Bulkheads();
  const s = await b.acquire(A, 1, 0, 0, 50);
  t.true(s.ok);
  t.deepEqual(await b.acquire(A, 1, 0, 0, 50), { ok: false, reason: 'full' });
  await sleep(80);
  t.true((await b.acquire(A, 1, 0, 0, 50)).ok);
});

test('routing: tenant over plan over service; breaker keys per target or tenant+target', (t) => {
  const c = config({
    upstreams: {
      ded: { host: '10.0.0.1', port: 8000 },
      shared: { host: '10.0.0.2', port: 8000, breaker_scope: 'upstream' },
    },
    plans: { pro: { upstream: 'ded', fallback_upstream: 'shared', max_in_flight: 9 } },
    tenants: { bravo: { upstream: 'shared' } },
  });
  t.notThrows(() => checkConfig(c));
  const ctx = (id: string, plan: string) =>
    createTenantContext({
      tenantId: parseTenantId(id),
      plan,
      source: 'consumer',
      subject: id,
      policy: {
        toolsAllowed: ['*'],
        preferredModel: null,
        fallbackModel: null,
        persona: null,
        knowledgeNamespace: id,
        weight: 1,
      },
    });
  const a = resolveRoute(c, ctx('alpha', 'pro'));
  t.is(a.primary?.label, 'ded');
  t.is(a.fallback?.label, 'shared');
  t.is(a.maxInFlight, 9);
  const b = resolveRoute(c, ctx('bravo', 'pro'));
  t.is(b.primary?.label, 'shared');
  t.is(resolveRoute(c, ctx('carol', 'free')).primary, null);
  t.is(resolveRoute(c, ctx('carol', 'free')).maxInFlight, 32);
  const ka = breakerKey('f', a.primary!, ctx('alpha', 'pro'));
  const kb = breakerKey('f', a.primary!, ctx('bravo', 'pro'));
  t.not(ka, kb, 'tenant scope: one breaker per tenant');
  t.is(
    breakerKey('f', b.primary!, ctx('bravo', 'pro')),
    breakerKey('f', b.primary!, ctx('alpha', 'pro')),
    'upstream scope: shared',
  );
  t.throws(() => checkConfig(config({ plans: { pro: { upstream: 'nope' } } })), {
    message: /plans\.pro\.upstream names upstream 'nope'/,
  });
});
