/**
 * circuit-breaker isolation: tenant A trying — on purpose or by its own failures — to trip,
 * fill, borrow or escape what belongs to tenant B. Serial: the tests share the upstreams' knobs.
 */
import test from 'ava';
import { apiError } from '../helpers/frontdoor';
import { BREAKER, receivedFor, sharedBreakerDoor, sleep } from '../helpers/breaker-door';

const door = sharedBreakerDoor(test);

const EMBED = { model: 'text-embedding-3-small', input: 'pathological prompt' };

test.beforeEach(() => {
  door().dedicated.reset();
  door().backup.reset();
  door().upstream.reset();
});

test.serial(
  "A's failing prompts on a shared deployment open A's breaker only: B on the same upstream keeps going",
  async (t) => {
    // Only A's kind of request fails: the deployment itself is healthy for B.
    door().dedicated.configure({
      failure: { mode: 'status', status: 500, pathPrefix: '/v1/embeddings' },
    });
    for (let i = 0; i < BREAKER.consecutive_failures; i++) {
      t.is((await door().ask('alpha', '/v1/embeddings', EMBED)).status, 500);
    }
    t.is(
      await door().settled('circuit_breaker_state', { upstream: 'dedicated', tenant: 'alpha' }, 1),
      1,
    );
    const a = await door().ask('alpha');
    t.is(a.status, 503, "A's breaker covers all of A's calls to that upstream");
    t.is(apiError(a).code, 'upstream_circuit_open');
    for (let i = 0; i < 5; i++) {
      const b = await door().ask('bravo');
      t.is(b.status, 200);
      t.is(b.headers['x-circuit-breaker-state'], undefined);
    }
    t.is(receivedFor(door().dedicated, 'bravo'), 5);
    t.is(
      await door().metric('circuit_breaker_state', { upstream: 'dedicated', tenant: 'bravo' }),
      0,
    );
  },
);

test.serial(
  "A's hanging requests fill A's bulkhead, never B's, on the same upstream",
  async (t) => {
    door().dedicated.configure({ failure: { mode: 'timeout', pathPrefix: '/v1/embeddings' } });
    const hanging = [
      door().ask('charlie', '/v1/embeddings', EMBED),
      door().ask('charlie', '/v1/embeddings', EMBED),
    ];
    await sleep(300);
    const refused = await door().ask('charlie', '/v1/embeddings', EMBED);
    t.is(refused.status, 503);
    t.is(apiError(refused).code, 'tenant_bulkhead_full');
    // B on the same upstream, many at once: B's own bulkhead (8) is untouched by A's
    const b = await Promise.all(Array.from({ length: 6 }, () => door().ask('bravo')));
    t.deepEqual(
      b.map((r) => r.status),
      Array(6).fill(200),
    );
    t.is(
      await door().metric('circuit_breaker_bulkhead_rejections_total', {
        tenant: 'bravo',
        reason: 'full',
      }),
      0,
    );
    await Promise.all(hanging);
  },
);

test.serial(
  'headers a client sends cannot choose an upstream, a tenant or a fallback',
  async (t) => {
    // A's breaker is open (previous test's failures are per tenant; open it again for golf)
    door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
    for (let i = 0; i < BREAKER.consecutive_failures; i++) await door().ask('golf');
    t.is(
      await door().settled('circuit_breaker_state', { upstream: 'dedicated', tenant: 'golf' }, 1),
      1,
    );
    const spoof: Array<[string, string]> = [
      ['x-tenant-id', 'globex'],
      ['x-tenant-plan', 'free'],
      ['x-circuit-breaker-fallback', 'backup'],
    ];
    const g = await door().ask('golf', '/v1/chat/completions', undefined, spoof);
    t.is(g.status, 503, 'still golf, still its open breaker');
    t.is(apiError(g).code, 'upstream_circuit_open');
    t.is(receivedFor(door().backup, 'golf'), 0, 'no fallback by asking for one');
    t.is(receivedFor(door().upstream, 'globex'), 0);

    // B claiming to be A is routed as B, to B's upstream
    const b = await door().ask('globex', '/v1/chat/completions', undefined, [
      ['x-tenant-id', 'golf'],
      ['x-tenant-plan', 'dedicated'],
    ]);
    t.is(b.status, 200);
    t.is(receivedFor(door().upstream, 'globex'), 1);
    t.is(receivedFor(door().dedicated, 'golf'), BREAKER.consecutive_failures);
  },
);

test.serial(
  'an open breaker of a plan without fallback never borrows another plan’s fallback',
  async (t) => {
    door().dedicated.configure({ failure: { mode: 'status', status: 503 } });
    for (let i = 0; i < BREAKER.consecutive_failures; i++) await door().ask('echo');
    t.is(
      await door().settled('circuit_breaker_state', { upstream: 'dedicated', tenant: 'echo' }, 1),
      1,
    );
    const r = await door().ask('echo');
    t.is(r.status, 503);
    t.is(r.headers['x-circuit-breaker-fallback'], undefined);
    t.is(door().backup.received.length, 0);
  },
);

test.serial(
  'a route with circuit-breaker but no tenant-auth refuses: nothing untenanted is proxied',
  async (t) => {
    const r = await door().ask('globex', '/bare/v1/chat/completions');
    t.is(r.status, 500);
    t.is(apiError(r).code, 'tenant_context_missing');
    t.is(door().upstream.received.length, 0);
    t.is(door().dedicated.received.length, 0);
  },
);
