/**
 * tenant-cache end to end: key-auth, tenant-auth and tenant-cache in real plugin servers, the
 * real Redis (random key namespace), the mock upstream recording what reached it. Serial: the
 * tests count stores and upstream calls on shared tenants.
 */
import test from 'ava';
import {
  apikey,
  detChat,
  eventually,
  metric,
  sharedCacheDoor,
  type CacheDoor,
} from '../helpers/cache-door';

const door = sharedCacheDoor(test);

const STORES = 'tenant_cache_stores_total';

/** Sends `body` and waits until the log phase has decided about storing it. */
async function sendAndSettle(
  d: CacheDoor,
  pathname: string,
  tenantKey: string,
  tenant: string,
  body: unknown,
  headers: Array<[string, string]> = [],
) {
  const before = await metric(d, STORES, { tenant });
  const r = await d.call(pathname, {
    headers: [...apikey(tenantKey), ...headers],
    body: body as object,
  });
  if (r.res.headers['x-cache-status'] === 'MISS' || r.res.headers['x-cache-status'] === 'BYPASS') {
    // Misses and refreshing bypasses are settled in log; wait for the outcome to be counted.
    if (pathname.startsWith('/v1'))
      await eventually(
        'the store outcome',
        async () => (await metric(d, STORES, { tenant })) > before,
      ).catch(() => undefined);
  }
  return r;
}

test.serial(
  'a deterministic chat is a MISS, then a HIT served without calling the upstream',
  async (t) => {
    const d = door();
    const body = detChat('what is a hash tag');
    const first = await sendAndSettle(d, '/v1/chat/completions', 'acme-key', 'acme', body);
    t.is(first.res.status, 200);
    t.is(first.res.headers['x-cache-status'], 'MISS');
    t.truthy(first.upstream, 'the miss reached the upstream');

    const second = await d.call('/v1/chat/completions', { headers: apikey('acme-key'), body });
    t.is(second.res.status, 200);
    t.is(second.res.headers['x-cache-status'], 'HIT');
    t.is(second.upstream, undefined, 'a hit never reaches the upstream');
    t.regex(String(second.res.headers['content-type']), /^application\/json/);
    t.regex(String(second.res.headers.age), /^\d+$/);
    t.deepEqual(second.res.json, first.res.json, 'the same answer, byte for byte');
  },
);
