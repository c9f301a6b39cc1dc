/**
 * circuit-breaker end to end: real plugin servers behind the gateway, three mock upstreams
 * with failure knobs (docs/mock-upstream.md). Serial: the tests share the upstreams' knobs.
 */
import test from 'ava';
import { apiError } from '../helpers/frontdoor';
import { BREAKER, receivedFor, sharedBreakerDoor, sleep } from '../helpers/breaker-door';
import { pidListeningOn } from '../helpers/upstreams';

const door = sharedBreakerDoor(test);

/** Waits until the log phase has recorded the breaker of `tenant` on `upstream` in `state`. */
async function breakerState(tenant: string, state: 0 | 1 | 2, upstream = 'dedicated') {
  return door().settled('circuit_breaker_state', { upstream, tenant }, state);
}

test.beforeEach(() => {
  door().dedicated.reset();
  door().backup.reset();
  door().upstream.reset();
});

test.serial('tenants are routed by plan: dedicated upstream, or the service target', async (t) => {
  const a = await door().ask('alpha');
  const g = await door().ask('globex');
  t.is(a.status, 200);
  t.is(g.status, 200);
  t.is(receivedFor(door().dedicated, 'alpha'), 1);
  t.is(receivedFor(door().upstream, 'alpha'), 0);
  t.is(receivedFor(door().upstream, 'globex'), 1);
  t.is(receivedFor(door().dedicated, 'globex'), 0);
  // set_target: Kong sends the bare host as Host (ngx.var.upstream_host = host)
  t.is(door().dedicated.received[0]?.headers.host, '127.0.0.1');
});

test.serial("a tenant's own upstream entry: its path and model replace the client's", async (t) => {
  // Another path of the API surface than the entry's (tenant-auth refuses one outside it).
  const r = await door().ask('hotel', '/v1/completions', {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });
  t.is(r.status, 200);
  const got = door().dedicated.received.find((x) => x.headers['x-test-id'] === r.testId);
  t.is(got?.path, '/v1/chat/completions');
  t.is((got?.json as { model?: string } | undefined)?.model, 'gpt-4.1');
  t.is(got?.headers['x-tenant-id'], 'hotel');
  t.is(r.headers['x-circuit-breaker-fallback'], undefined);
});

test.serial(
  "A's upstream fails → A's breaker opens and fails fast; B on a healthy upstream is unaffected",
  async (t) => {
    door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
    const statuses: number[] = [];
    for (let i = 0; i < BREAKER.consecutive_failures; i++) {
      statuses.push((await door().ask('alpha')).status);
      t.is((await door().ask('globex')).status, 200);
    }
    t.deepEqual(statuses, Array(BREAKER.consecutive_failures).fill(500), 'upstream errors pass');
    t.is(await breakerState('alpha', 1), 1, 'open once the log events are in');
    const reached = receivedFor(door().dedicated, 'alpha');
    t.is(reached, BREAKER.consecutive_failures);

    const open = await door().ask('alpha');
    t.is(open.status, 503);
    const err = apiError(open);
    t.is(err.type, 'service_unavailable');
    t.is(err.code, 'upstream_circuit_open');
    const retryAfter = Number(open.headers['retry-after']);
    t.true(retryAfter >= 1 && retryAfter <= Math.ceil(BREAKER.half_open_after_ms / 1000));
    t.is(open.headers['x-circuit-breaker-state'], 'open');
    t.is(receivedFor(door().dedicated, 'alpha'), reached, 'an open breaker sends nothing');

    // B: same node, same plugin, healthy upstream
    for (let i = 0; i < 5; i++) t.is((await door().ask('globex')).status, 200);
    t.true(
      (await door().metric('circuit_breaker_short_circuited_total', {
        upstream: 'dedicated',
        tenant: 'alpha',
      })) >= 1,
    );
    t.is(
      await door().metric('circuit_breaker_outcomes_total', {
        upstream: 'dedicated',
        tenant: 'alpha',
        outcome: 'upstream_5xx',
      }),
      BREAKER.consecutive_failures,
    );
  },
);

test.serial('recovery through half-open: one probe, then closed', async (t) => {
  door().dedicated.configure({ failure: { mode: 'status', status: 502 } });
  for (let i = 0; i < BREAKER.consecutive_failures; i++) await door().ask('bravo');
  t.is(await breakerState('bravo', 1), 1);
  t.is((await door().ask('bravo')).status, 503);
  door().dedicated.configure({ failure: null });
  await sleep(BREAKER.half_open_after_ms + 100);
  const probe = await door().ask('bravo');
  t.is(probe.status, 200, 'the probe reaches the recovered upstream');
  t.is(await breakerState('bravo', 0), 0, 'closed by the probe');
  t.is((await door().ask('bravo')).status, 200);
  t.is(
    await door().metric('circuit_breaker_transitions_total', {
      upstream: 'dedicated',
      tenant: 'bravo',
      to: 'half_open',
    }),
    1,
  );
});

test.serial(
  'half-open: while the probe hangs every other request fails fast; a failed probe reopens',
  async (t) => {
    door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
    for (let i = 0; i < BREAKER.consecutive_failures; i++) await door().ask('bravo');
    t.is(await breakerState('bravo', 1), 1);
    door().dedicated.configure({ failure: { mode: 'timeout' } });
    await sleep(BREAKER.half_open_after_ms + 100);
    const probe = door().ask('bravo'); // hangs until the service read timeout (504)
    await sleep(300);
    const others = await Promise.all([door().ask('bravo'), door().ask('bravo')]);
    for (const o of others) {
      t.is(o.status, 503);
      t.is(apiError(o).code, 'upstream_circuit_half_open');
      t.truthy(o.headers['retry-after']);
    }
    t.is((await probe).status, 504, "Kong's timeout answer");
    t.is(await breakerState('bravo', 1), 1);
    const after = await door().ask('bravo');
    t.is(apiError(after).code, 'upstream_circuit_open', 'the failed probe reopened the breaker');
    t.is(receivedFor(door().dedicated, 'bravo'), BREAKER.consecutive_failures + 1);
  },
);

test.serial("a hanging upstream fills A's bulkhead (2 + queue 1), not B's", async (t) => {
  door().dedicated.configure({ failure: { mode: 'timeout' } });
  const hanging = [door().ask('charlie'), door().ask('charlie')];
  t.is(
    await door().settled('circuit_breaker_bulkhead_in_flight', { tenant: 'charlie' }, 2),
    2,
    'the occupancy gauge shows both slots held',
  );
  // third waits in the queue then gives up; the fourth finds the queue full
  const [queued, full] = await Promise.all([door().ask('charlie'), door().ask('charlie')]);
  for (const r of [queued, full]) {
    t.is(r.status, 503);
    t.is(apiError(r).code, 'tenant_bulkhead_full');
    t.is(r.headers['retry-after'], '1');
  }
  // tenants on the service target are not held by A's bulkhead
  const b = await Promise.all([door().ask('globex'), door().ask('initech')]);
  t.deepEqual(
    b.map((r) => r.status),
    [200, 200],
  );
  t.is(receivedFor(door().dedicated, 'charlie'), 2, 'only the bulkhead’s two reached it');
  t.deepEqual(
    (await Promise.all(hanging)).map((r) => r.status),
    [504, 504],
  );
  t.true(
    (await door().metric('circuit_breaker_bulkhead_rejections_total', {
      tenant: 'charlie',
      reason: 'full',
    })) >= 1,
  );
  t.true(
    (await door().metric('circuit_breaker_bulkhead_rejections_total', {
      tenant: 'charlie',
      reason: 'queue_timeout',
    })) >= 1,
  );
  // the slots come back with the log events
  t.is(
    await door().settled(
      'circuit_breaker_outcomes_total',
      { tenant: 'charlie', outcome: 'upstream_timeout' },
      2,
    ),
    2,
  );
  t.is(
    await door().settled('circuit_breaker_bulkhead_in_flight', { tenant: 'charlie' }, 0),
    0,
    'and none once the log events came',
  );
  door().dedicated.configure({ failure: null });
  t.is((await door().ask('charlie')).status, 200);
});

test.serial(
  'premium plan: open breaker → the fallback upstream and model, said in a header',
  async (t) => {
    door().dedicated.configure({ failure: { mode: 'reset' } });
    for (let i = 0; i < BREAKER.consecutive_failures; i++) {
      t.is((await door().ask('delta')).status, 502, 'a reset connection is a 502 from Kong');
    }
    t.is(await breakerState('delta', 1), 1);
    const r = await door().ask('delta');
    t.is(r.status, 200);
    t.is(r.headers['x-circuit-breaker-fallback'], 'backup');
    t.is(r.headers['x-circuit-breaker-fallback-model'], 'gpt-4o-mini');
    const got = door().backup.received.find((x) => x.headers['x-test-id'] === r.testId);
    t.is((got?.json as { model?: string } | undefined)?.model, 'gpt-4o-mini');
    t.is(got?.headers['x-tenant-id'], 'delta');
    t.is(
      await door().metric('circuit_breaker_fallbacks_total', {
        upstream: 'dedicated',
        fallback: 'backup',
        tenant: 'delta',
      }),
      1,
    );
    t.is(
      await door().metric('circuit_breaker_outcomes_total', {
        upstream: 'dedicated',
        tenant: 'delta',
        outcome: 'upstream_unreachable',
      }),
      BREAKER.consecutive_failures,
    );
  },
);

test.serial('upstream 429 is overload, counted apart: it does not open the breaker', async (t) => {
  door().dedicated.configure({ failure: { mode: 'status', status: 429 } });
  for (let i = 0; i < BREAKER.consecutive_failures * 2; i++) {
    t.is((await door().ask('echo')).status, 429);
  }
  t.is(receivedFor(door().dedicated, 'echo'), BREAKER.consecutive_failures * 2);
  t.is(
    await door().settled(
      'circuit_breaker_outcomes_total',
      { tenant: 'echo', outcome: 'upstream_429' },
      BREAKER.consecutive_failures * 2,
    ),
    BREAKER.consecutive_failures * 2,
  );
  t.is(await door().metric('circuit_breaker_state', { tenant: 'echo' }), 0);
  door().dedicated.configure({ failure: null });
  t.is((await door().ask('echo')).status, 200);
});

test.serial("another plugin's 503 refusal is not an upstream failure", async (t) => {
  for (let i = 0; i < BREAKER.consecutive_failures * 2; i++) {
    const r = await door().ask('golf', '/refuse/v1/chat/completions');
    t.is(r.status, 503);
    t.is(apiError(r).code, 'refused');
  }
  t.is(
    await door().settled(
      'circuit_breaker_outcomes_total',
      { tenant: 'golf', outcome: 'refused_by_plugin' },
      BREAKER.consecutive_failures * 2,
    ),
    BREAKER.consecutive_failures * 2,
  );
  const r = await door().ask('golf');
  t.is(r.status, 200, 'the breaker stayed closed');
});

test.serial('the plugin server killed mid-run is respawned and breaks again', async (t) => {
  door().dedicated.configure({ failure: { mode: 'status', status: 500 } });
  for (let i = 0; i < BREAKER.consecutive_failures; i++) await door().ask('foxtrot');
  t.is(await breakerState('foxtrot', 1), 1);
  t.is((await door().ask('foxtrot')).status, 503);

  const before = pidListeningOn(door().metricsPort);
  t.truthy(before, 'the plugin server serves its metrics port');
  process.kill(before as number, 'SIGKILL');

  // Requests until the respawned plugin server answers again (bounded).
  let after: number | null = null;
  for (let i = 0; i < 60 && (after === null || after === before); i++) {
    await door().ask('globex');
    after = pidListeningOn(door().metricsPort);
    if (after === null || after === before) await sleep(250);
  }
  t.truthy(after);
  t.not(after, before);
  // Breakers lived in the dead process: foxtrot's is closed again, and opens again.
  const statuses: number[] = [];
  for (let i = 0; i < BREAKER.consecutive_failures; i++) {
    statuses.push((await door().ask('foxtrot')).status);
  }
  t.deepEqual(statuses, Array(BREAKER.consecutive_failures).fill(500));
  t.is(await breakerState('foxtrot', 1), 1, 'the new process opened its own breaker');
  t.is((await door().ask('foxtrot')).status, 503);
  t.is((await door().ask('globex')).status, 200);
});
