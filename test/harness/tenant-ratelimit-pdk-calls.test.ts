/**
 * tenant-ratelimit's PDK calls per request shape, as its README states them ("Cost on the
 * request path"). Counted by the harness, which sees every RPC between Kong and the plugin
 * server; the real Kong exposes no such count, so this file runs on the harness only. Run it
 * in both layouts: KTA_PLUGINSERVER_MODE=chain (the default) and per-plugin.
 */
import test from 'ava';
import { sharedRatelimitDoor } from '../helpers/ratelimit-door';

const QUEUE = { upstream: 'llm', max_concurrent: 4, max_wait_ms: 5000 };
const door = sharedRatelimitDoor(test, [
  { name: 'queued', config: { queue: QUEUE } },
  { name: 'plain', config: { flex: { enabled: false }, ratelimit_headers: false } },
  { name: 'refused', config: { default_limits: { requests_per_minute: 1, request_burst: 1 } } },
]);

/** A probe for the PDK batch snippet, which these routes lack (lib/pluginserver/batch.ts). */
const BATCH_PROBE = 'kong.ctx.shared.kta_pdk.run';

type Counts = Record<string, number>;

/** Calls by name, the batch probe left out. */
function counted(stats: { pdkCalls: Counts } | undefined): Counts {
  const out: Counts = {};
  for (const [name, n] of Object.entries(stats?.pdkCalls ?? {})) {
    if (name !== BATCH_PROBE) out[name] = n;
  }
  return out;
}

async function phases(route: string, headers: Array<[string, string]> = []) {
  const { res } = await door().call(route, 'globex-key', { headers });
  const id = String(res.headers['x-kong-request-id']);
  await door().gateway.logDone(id);
  const plugins = door().gateway.requestStats(id)?.plugins;
  const own = plugins?.['tenant-ratelimit'];
  return {
    status: res.status,
    access: counted(own?.access),
    /** Its own log phase: one process per plugin only. */
    log: own?.log === undefined ? null : counted(own.log),
    /** tenant-auth's log phase, which runs this plugin's release in the co-hosted chain. */
    chainLog: counted(plugins?.['tenant-auth']?.log),
  };
}

const GET = 'kong.ctx.shared.get';

test.serial('PDK calls per phase stay as documented', async (t) => {
  const admitted = await phases('queued');
  const flex = await phases('queued', [['x-request-priority', 'low']]);
  const plain = await phases('plain');
  t.is((await phases('refused')).status, 200);
  const refused = await phases('refused');
  t.deepEqual([admitted.status, flex.status, plain.status, refused.status], [200, 200, 200, 429]);

  if (admitted.log === null) {
    // Co-hosted: the body, headers and estimate come from the request's scope.
    const withHeaders = { [GET]: 1, 'kong.response.set_headers': 1 };
    t.deepEqual(admitted.access, withHeaders);
    t.deepEqual(flex.access, withHeaders);
    // flex off, no RateLimit headers on admission: nothing to send
    t.deepEqual(plain.access, { [GET]: 1 });
    // The refusal's body names the request (lib/plugin/phase.ts): one get_var.
    t.deepEqual(refused.access, {
      [GET]: 1,
      'kong.nginx.get_var': 1,
      'kong.response.exit': 1,
    });
    // tenant-auth's carrier read, then this plugin's usage read; a refusal leaves no work
    for (const r of [admitted, flex, plain]) t.deepEqual(r.chainLog, { [GET]: 2 });
    t.deepEqual(refused.chainLog, { [GET]: 1 });
    return;
  }
  // One process per plugin: the estimate is computed and published here, the body read.
  const estimate = {
    [GET]: 2,
    'kong.ctx.shared.set': 1,
    'kong.request.get_raw_body': 1,
  };
  const header = { 'kong.request.get_header': 1 };
  t.deepEqual(admitted.access, { ...estimate, ...header, 'kong.response.set_headers': 1 });
  t.deepEqual(flex.access, { ...estimate, ...header, 'kong.response.set_headers': 1 });
  t.deepEqual(plain.access, estimate);
  t.deepEqual(refused.access, {
    ...estimate,
    ...header,
    'kong.nginx.get_var': 1,
    'kong.response.exit': 1,
  });
  for (const r of [admitted, flex, plain]) t.deepEqual(r.log, { [GET]: 2 });
  t.deepEqual(refused.log, { [GET]: 1 });
});
