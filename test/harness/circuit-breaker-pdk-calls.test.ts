/**
 * circuit-breaker's PDK calls per request shape, as its README states them. Counted by the
 * harness, which sees every RPC between Kong and the plugin server; the real Kong exposes no
 * such count, so this file runs on the harness only.
 */
import test from 'ava';
import { BREAKER, sharedBreakerDoor, type TenantName } from '../helpers/breaker-door';

const door = sharedBreakerDoor(test);

async function calls(tenant: TenantName) {
  const r = await door().ask(tenant);
  const id = String(r.headers['x-kong-request-id']);
  await door().gateway.logDone(id);
  const plugins = door().gateway.requestStats(id)?.plugins;
  const stats = plugins?.['circuit-breaker'];
  const names = (p: { pdkCalls: Record<string, number> } | undefined) =>
    Object.entries(p?.pdkCalls ?? {})
      // a probe for the PDK batch snippet, which these routes lack (lib/pluginserver/batch.ts)
      .filter(([k]) => k !== 'kong.ctx.shared.kta_pdk.run')
      .flatMap(([k, n]) => Array<string>(n).fill(k));
  // Co-hosted (the default layout) the breaker declares no log phase: its log work runs in
  // tenant-auth's, after tenant-auth's one carrier read (lib/request/chain-log.ts).
  const log = stats?.log
    ? names(stats.log)
    : names(plugins?.['tenant-auth']?.log).filter((k) => k !== 'kong.ctx.shared.get');
  return {
    status: r.status,
    access: names(stats?.access).sort(),
    log: log.sort(),
    ownLog: stats?.log !== undefined,
  };
}

test.serial('PDK calls per phase stay as documented', async (t) => {
  const service = await calls('globex');
  t.is(service.status, 200);
  t.deepEqual(service.access, [
    'kong.ctx.shared.get',
    'kong.nginx.get_var',
    'kong.router.get_service',
  ]);
  t.deepEqual(service.log, ['kong.log.serialize', 'kong.response.get_source']);

  const routed = await calls('alpha');
  t.deepEqual(routed.access, [
    'kong.ctx.shared.get',
    'kong.nginx.get_var',
    'kong.service.set_target',
  ]);

  // delta's dedicated upstream fails until its breaker opens, then it falls back with a model
  door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
  for (let i = 0; i < BREAKER.consecutive_failures; i++) await calls('delta');
  const fallback = await calls('delta');
  t.is(fallback.status, 200);
  // The body tenant-auth read (the request's scope, one process for the chain): not read again.
  t.deepEqual(fallback.access, [
    'kong.ctx.shared.get',
    'kong.nginx.get_var',
    'kong.response.set_headers',
    'kong.service.request.set_raw_body',
    'kong.service.set_target',
  ]);

  // alpha's breaker opens too: the refusal reads no body; its own log phase only the
  // serializer, and co-hosted nothing at all (it admitted nothing, so it left no log work)
  door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
  for (let i = 0; i < BREAKER.consecutive_failures; i++) await calls('alpha');
  const refused = await calls('alpha');
  t.is(refused.status, 503);
  // The refusal's body names the request (lib/plugin/phase.ts): one get_var.
  t.deepEqual(refused.access, ['kong.ctx.shared.get', 'kong.nginx.get_var', 'kong.response.exit']);
  t.deepEqual(refused.log, refused.ownLog ? ['kong.log.serialize'] : []);
});
