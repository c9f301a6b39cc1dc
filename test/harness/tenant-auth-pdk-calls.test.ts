/**
 * tenant-auth's PDK calls per request shape. Counted by the harness, which sees every RPC
 * between Kong and the plugin server; the real Kong exposes no such count, so this file runs
 * on the harness only (the plugin server issues the same calls whichever gateway answers).
 */
import test from 'ava';
import { chat } from '../helpers/frontdoor';
import { sharedTenantDoor } from '../helpers/tenant-routes';

const tenantDoor = sharedTenantDoor(test);
const key = (k: string): Array<[string, string]> => [['apikey', k]];

test('PDK calls of the access path stay within budget', async (t) => {
  const door = tenantDoor();
  const open = await door.call('/v1/models', { headers: key('open-key') });
  const lean = await door.call('/lean/v1/chat/completions', {
    headers: key('open-key'),
    body: chat('x'),
  });
  const get = await door.call('/v1/models', { headers: key('acme-key') });
  const unchanged = await door.call('/v1/chat/completions', {
    headers: key('globex-key'),
    body: chat('x'),
  });
  const post = await door.call('/v1/chat/completions', {
    headers: key('acme-key'),
    body: chat('x'),
  });
  const access = (r: typeof get) =>
    door.gateway.requestStats(String(r.res.headers['x-kong-request-id']))?.plugins['tenant-auth']
      ?.access;
  // The plugin's own calls: these routes have no PDK batch snippet (kong.yml's pre-function),
  // so a probe for it (lib/pluginserver/batch.ts: once per instance and minute) runs nothing.
  const calls = (r: typeof get) =>
    Object.entries(access(r)?.pdkCalls ?? {})
      .filter(([m]) => m !== 'kong.ctx.shared.kta_pdk.run')
      .reduce((a, [, b]) => a + b, 0);
  // Every request: its method, Kong's upstream URI and its query (the API surface, read with
  // the phase's first call where kong.yml's PDK batch snippet is on the route); a GET, HEAD or
  // DELETE also has its body cleared (set_raw_body, a write sent with the others).
  t.is(calls(open), 9, 'no body policy (tools: *, no persona), GET');
  t.is(calls(lean), 8, 'no body policy, validate_json_body off: body not read');
  t.is(calls(get), 9, 'body policy, GET: no body read, none sent upstream');
  t.is(calls(unchanged), 9, 'body policy, nothing to change: the client bytes go upstream');
  t.is(calls(post), 10, 'body policy, persona applied: body rewritten');
  // One HandleEvent exchange opens the phase; each PDK call is one more (docs/harness.md).
  t.is(access(open)?.roundTrips, 10);
  t.deepEqual(Object.keys(access(open)?.pdkCalls ?? {}).sort(), [
    'kong.client.get_consumer',
    'kong.ctx.shared.set',
    'kong.log.set_serialize_value',
    'kong.nginx.get_var',
    'kong.request.get_headers',
    'kong.request.get_method',
    'kong.request.get_path_with_query',
    'kong.service.request.set_headers',
    'kong.service.request.set_raw_body',
  ]);
});
