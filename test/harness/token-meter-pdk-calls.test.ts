/**
 * token-meter's PDK calls per request shape: a metered miss, a stream, an upstream error (the
 * reservation released), a budget refusal, a cache hit settled in log, showback and a GET the
 * meter passes. Counted by the harness, which sees every RPC between Kong and the plugin
 * server; the real Kong exposes no such count, so this file runs on the harness only. Run it
 * in both layouts: KTA_PLUGINSERVER_MODE=chain (the default) and per-plugin.
 */
import test from 'ava';
import { resolvePluginServerMode } from '../../harness/pluginserver/layout';
import { chat } from '../helpers/frontdoor';
import { sharedMeterDoor, type MeterDoor } from '../helpers/token-meter-door';

const door = sharedMeterDoor(test);

/** A probe for the PDK batch snippet, which these routes lack (lib/pluginserver/batch.ts). */
const BATCH_PROBE = 'kong.ctx.shared.kta_pdk.run';

type Counts = Record<string, number>;

/** Calls by name, the batch probe left out. */
function counted(stats: { pdkCalls: Counts } | undefined): Counts | null {
  if (!stats) return null;
  const out: Counts = {};
  for (const [name, n] of Object.entries(stats.pdkCalls)) {
    if (name !== BATCH_PROBE) out[name] = n;
  }
  return out;
}

async function phases(tenant: string, pathname: string, init: Parameters<MeterDoor['call']>[2]) {
  const { res } = await door().call(tenant, pathname, init);
  const id = String(res.headers['x-kong-request-id']);
  await door().gateway.logDone(id);
  const own = door().gateway.requestStats(id)?.plugins['token-meter'];
  return { status: res.status, access: counted(own?.access), log: counted(own?.log) };
}

const GET = 'kong.ctx.shared.get';
const SET = 'kong.ctx.shared.set';
const CHAT = '/v1/chat/completions';
const SHOWBACK = '/v1/organization/usage/completions?start_time=';

test.serial('PDK calls per phase stay as documented', async (t) => {
  const miss = await phases('globex', CHAT, { body: chat('count my calls') });
  const stream = await phases('streamco', CHAT, { body: chat('stream me', { stream: true }) });
  door().upstream.configure({ failure: { mode: 'status', status: 500, count: 1 } });
  t.teardown(() => door().upstream.configure({ failure: null }));
  const failed = await phases('errco', CHAT, { body: chat('fail me') });
  // tinyco's budget (300 tokens) cannot hold 1000 completion tokens, and it may not clamp
  const refused = await phases('tinyco', CHAT, { body: chat('too big', { max_tokens: 1000 }) });
  const hit = await phases('cacheco', CHAT, {
    body: chat('asked before'),
    headers: [['x-probe-cache', 'hit']],
  });
  const start = Math.floor(Date.now() / 1000) - 86_400;
  const showback = await phases('globex', `${SHOWBACK}${start}`, {});
  const models = await phases('globex', '/v1/models', {});
  t.deepEqual(
    [miss, stream, failed, refused, hit, showback, models].map((r) => r.status),
    [200, 200, 500, 429, 200, 200, 200],
  );

  // A tenant-cache hit exits before the meter: no access phase; its log settles the hit.
  t.is(hit.access, null);
  // The refusal's body names the request (lib/plugin/phase.ts): one get_var more.
  const refusal = { 'kong.nginx.get_var': 2, 'kong.response.exit': 1 };
  // The request id, the meter state for the log phase, the bounded body, the upstream asked
  // for an uncompressed answer (the usage reader reads its bytes), the budget headers.
  const metered = {
    'kong.nginx.get_var': 1,
    'kong.service.request.set_raw_body': 1,
    'kong.service.request.set_headers': 1,
    'kong.response.set_headers': 1,
  };

  if (resolvePluginServerMode(undefined) === 'chain') {
    // Co-hosted: the method, body and estimate come from the request's scope; the tenant's
    // context is read once per phase.
    const access = { [GET]: 1, 'kong.request.get_path': 1, [SET]: 1, ...metered };
    for (const r of [miss, stream, failed]) t.deepEqual(r.access, access);
    t.deepEqual(refused.access, { [GET]: 1, 'kong.request.get_path': 1, ...refusal });
    t.deepEqual(showback.access, { [GET]: 1, 'kong.response.exit': 1 });
    t.deepEqual(models.access, { [GET]: 1 });
    // tenant, meter state, ai-request-transformer's usage (none here), usage; then the status
    for (const r of [miss, stream, failed])
      t.deepEqual(r.log, { [GET]: 4, 'kong.response.get_status': 1 });
    // tenant, no meter state, the cache status (not a hit)
    for (const r of [refused, showback, models]) t.deepEqual(r.log, { [GET]: 3 });
    // + the saved log facts (the serializer: the snippet is not on this route) and the estimate
    t.deepEqual(hit.log, { [GET]: 5, 'kong.log.serialize': 1 });
    return;
  }
  // One process per plugin: the method and body are read here, the estimate computed and
  // published (ctx.shared get + set), and the log also reads the capture flag.
  const read = {
    [GET]: 2,
    'kong.request.get_method': 1,
    'kong.request.get_path': 1,
    'kong.request.get_raw_body': 1,
  };
  // + the path Kong sends upstream (what a POST spends: lib/http/api-surface.ts postSpends),
  // which tenant-auth read in its own process.
  const upstreamUri = { 'kong.nginx.get_var': 1 };
  for (const r of [miss, stream, failed])
    t.deepEqual(r.access, {
      ...read,
      ...metered,
      'kong.nginx.get_var': metered['kong.nginx.get_var'] + upstreamUri['kong.nginx.get_var'],
      [SET]: 2,
    });
  t.deepEqual(refused.access, {
    ...read,
    [SET]: 1,
    ...refusal,
    'kong.nginx.get_var': refusal['kong.nginx.get_var'] + upstreamUri['kong.nginx.get_var'],
  });
  const showbackRead = {
    [GET]: 1,
    'kong.request.get_method': 1,
    'kong.request.get_path_with_query': 1,
  };
  t.deepEqual(showback.access, { ...showbackRead, 'kong.response.exit': 1 });
  t.deepEqual(models.access, showbackRead);
  for (const r of [miss, stream, failed])
    t.deepEqual(r.log, { [GET]: 5, 'kong.response.get_status': 1 });
  for (const r of [refused, showback, models]) t.deepEqual(r.log, { [GET]: 4 });
  t.deepEqual(hit.log, { [GET]: 6, 'kong.log.serialize': 1 });
});
