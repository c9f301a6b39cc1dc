/**
 * tenant-ratelimit's PDK calls per request shape, as its README states them ("Cost on the
 * request path"). Counted by the harness, which sees every RPC between Kong and the plugin
 * server; the real Kong exposes no such count, so this file runs on the harness only.
 */
import test from 'ava';
import { sharedRatelimitDoor } from '../helpers/ratelimit-door';

const QUEUE = { upstream: 'llm', max_concurrent: 4, max_wait_ms: 5000 };
const door = sharedRatelimitDoor(test, [
  { name: 'queued', config: { queue: QUEUE } },
  { name: 'plain', config: { flex: { enabled: false }, ratelimit_headers: false } },
  { name: 'refused', config: { default_limits: { requests_per_minute: 1, request_burst: 1 } } },
]);

async function calls(route: string, headers: Array<[string, string]> = []) {
  const { res } = await door().call(route, 'globex-key', { headers });
  const id = String(res.headers['x-kong-request-id']);
  await door().gateway.logDone(id);
  const plugins = door().gateway.requestStats(id)?.plugins;
  const stats = plugins?.['tenant-ratelimit'];
  const names = (p: { pdkCalls: Record<string, number> } | undefined) =>
    Object.entries(p?.pdkCalls ?? {})
      // a probe for the PDK batch snippet, which these routes lack (lib/pluginserver/batch.ts)
      .filter(([k]) => k !== 'kong.ctx.shared.kta_pdk.run')
      .flatMap(([k, n]) => Array<string>(n).fill(k));
  return {
    status: res.status,
    access: names(stats?.access).sort(),
    log: names(stats?.log).sort(),
    ownLog: stats?.log !== undefined,
    chainLog: names(plugins?.['tenant-auth']?.log).sort(),
  };
}

const GET = 'kong.ctx.shared.get';
const SET_HEADERS = 'kong.response.set_headers';

/**
 * Co-hosted (the default layout) the body, headers and estimate come from the request's scope
 * and the release runs in tenant-auth's log phase, after its one carrier read; one process per
 * plugin reads them from Kong and runs its own log phase.
 */
test.serial('PDK calls per phase stay as documented', async (t) => {
  const admitted = await calls('queued');
  t.is(admitted.status, 200);
  const flex = await calls('queued', [['x-request-priority', 'low']]);
  t.is(flex.status, 200);
  const plain = await calls('plain');
  t.is(plain.status, 200);
  t.is((await calls('refused')).status, 200);
  const refused = await calls('refused');
  t.is(refused.status, 429);

  if (!admitted.ownLog) {
    t.deepEqual(admitted.access, [GET, SET_HEADERS]);
    t.deepEqual(flex.access, [GET, SET_HEADERS]);
    // flex off, no RateLimit headers on admission: nothing to send
    t.deepEqual(plain.access, [GET]);
    // The refusal's body names the request (lib/plugin/phase.ts): one get_var.
    t.deepEqual(refused.access, [GET, 'kong.nginx.get_var', 'kong.response.exit']);
    // tenant-auth's carrier read, then this plugin's usage read; a refusal left nothing
    for (const r of [admitted, flex, plain]) t.deepEqual(r.chainLog, [GET, GET]);
    t.deepEqual(refused.chainLog, [GET]);
    return;
  }
  const estimate = [GET, GET, 'kong.ctx.shared.set'];
  const body = 'kong.request.get_raw_body';
  const header = 'kong.request.get_header';
  t.deepEqual(admitted.access, [...estimate, header, body, SET_HEADERS]);
  t.deepEqual(flex.access, [...estimate, header, body, SET_HEADERS]);
  t.deepEqual(plain.access, [...estimate, body]);
  t.deepEqual(refused.access, [
    ...estimate,
    'kong.nginx.get_var',
    header,
    body,
    'kong.response.exit',
  ]);
  for (const r of [admitted, flex, plain]) t.deepEqual(r.log, [GET, GET]);
  t.deepEqual(refused.log, [GET]);
});
