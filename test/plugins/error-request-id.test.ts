/**
 * Every refusal of ours names the request: the OpenAI-style error body carries Kong's request id
 * (`error.request_id`), the same value as the `X-Kong-Request-Id` header the tenant also gets, so
 * a tenant can quote it and the operator find (or replay) that request. kong.yml's chain on both
 * gateways; refusals by two plugins (tenant-auth and tenant-ratelimit: guardPhase answers for all six).
 */
import test from 'ava';
import { send } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';

test('refusals by tenant-auth and tenant-ratelimit carry the request id in the body', async (t) => {
  const door = await startKongYmlDoor(
    (fn) => t.teardown(fn),
    (p) => {
      // globex refused by the rate limit at its second request.
      if (p.name === 'tenant-ratelimit' && p.config) {
        p.config.tenants = { globex: { requests_per_minute: 1, request_burst: 1 } };
      }
    },
  );
  const chat = (key: string, body: string) =>
    send(`${door.url}/v1/chat/completions`, {
      headers: [
        ['apikey', key],
        ['content-type', 'application/json'],
      ],
      body,
    });
  const refusals = [
    // tenant-auth: a body that is not JSON on a plan that polices the body
    await chat('acme-demo-key', '{not json'),
    // tenant-ratelimit: globex over its one request a minute
    await chat(
      'globex-demo-key',
      JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a' }] }),
    ).then(() =>
      chat(
        'globex-demo-key',
        JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'b' }] }),
      ),
    ),
  ];
  const codes: string[] = [];
  for (const r of refusals) {
    t.true(r.status >= 400 && r.status < 500, `${r.status} ${r.text}`);
    const err = (r.json as { error?: { request_id?: unknown; code?: string } }).error;
    codes.push(String(err?.code));
    const header = r.headers['x-kong-request-id'];
    t.regex(String(header), /^[0-9a-f]{32}$/, 'Kong sent its request id');
    t.is(err?.request_id, header, `${err?.code}: the body names the same request`);
  }
  t.is(new Set(refusals.map((r) => r.headers['x-kong-request-id'])).size, refusals.length);
  t.is(codes.length, 2);
});
