/**
 * tenant-ratelimit on two gateway nodes sharing one Redis (GATEWAY=kong: two real Kong 3.9.3,
 * each with its own prefix, port and plugin-server processes; else two harness gateways, each
 * with its own plugin servers), one declarative config, one mock upstream. The limits, the
 * concurrency cap and the fair queue's capacity hold for the two nodes together, not per
 * node; a node that dies holding a lease gives it back through the lease's TTL.
 *
 * Every test is serial (they share the upstream's latency knob), and the node kill is last.
 */
import test from 'ava';
import { apiError } from '../helpers/frontdoor';
import {
  eventually,
  startRatelimitCluster,
  type RatelimitCluster,
  type RouteSpec,
} from '../helpers/ratelimit-door';
import { Closers } from '../helpers/frontdoor';

const SEATS = 3;
/** Seat lease of the `dead` route; the tenant lease lives max_wait_ms longer. */
const DEAD_SEAT_TTL_S = 5;

const ROUTES: RouteSpec[] = [
  { name: 'rpm', config: { default_limits: { requests_per_minute: 1, request_burst: 4 } } },
  { name: 'conc', config: { default_limits: { max_concurrent: 2 } } },
  { name: 'queue', config: { queue: { max_concurrent: SEATS, max_wait_ms: 25000 } } },
  { name: 'fair', config: { queue: { max_concurrent: 1, max_wait_ms: 15000 } } },
  {
    name: 'dead',
    config: {
      default_limits: { max_concurrent: 1 },
      queue: {
        max_concurrent: 1,
        max_wait_ms: 500,
        poll_interval_ms: 100,
        seat_ttl_seconds: DEAD_SEAT_TTL_S,
      },
    },
  },
];

let cluster: RatelimitCluster | undefined;
const closers = new Closers();
test.before(async () => {
  cluster = await startRatelimitCluster(closers.add, ROUTES, 2);
});
test.after.always(() => closers.closeAll());
const nodes = (): RatelimitCluster => {
  if (!cluster) throw new Error('the cluster did not start');
  return cluster;
};

const GLOBEX = 'globex-key';
const ACME = 'acme-key';
const INITECH = 'initech-key';

test.serial('the two nodes are separate gateways, each with its own plugin servers', (t) => {
  const [a, b] = nodes().gateways;
  t.truthy(a && b);
  t.not(a?.port, b?.port);
  const pa = a?.pluginServerInfo('tenant-ratelimit').pid ?? -1;
  const pb = b?.pluginServerInfo('tenant-ratelimit').pid ?? -1;
  t.true(pa > 0 && pb > 0, `plugin server pids ${pa}, ${pb}`);
  t.not(pa, pb);
});

test.serial(
  'requests per minute: one bucket for both nodes (a burst of 4, not 4 per node)',
  async (t) => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++)
      statuses.push((await nodes().call(i % 2, 'rpm', GLOBEX)).res.status);
    t.deepEqual(statuses, [200, 200, 200, 200, 429, 429, 429, 429]);
    const refused = await nodes().call(1, 'rpm', GLOBEX);
    t.is(apiError(refused.res).code, 'tenant_requests_per_minute_exceeded');
    t.is(refused.upstream, undefined);
    // Another tenant's bucket on the same route is untouched, on either node.
    t.is((await nodes().call(0, 'rpm', ACME)).res.status, 200);
    t.is((await nodes().call(1, 'rpm', ACME)).res.status, 200);
  },
);

test.serial(
  'concurrency cap: 2 in flight for the tenant across both nodes, not 2 per node',
  async (t) => {
    nodes().upstream.configure({ latencyMs: 1500 });
    t.teardown(() => nodes().upstream.configure({ latencyMs: 0 }));
    const calls = await Promise.all([
      nodes().call(0, 'conc', GLOBEX),
      nodes().call(1, 'conc', GLOBEX),
      nodes().call(0, 'conc', GLOBEX),
      nodes().call(1, 'conc', GLOBEX),
    ]);
    const statuses = calls.map((c) => c.res.status).sort();
    t.deepEqual(statuses, [200, 200, 429, 429]);
    for (const c of calls.filter((x) => x.res.status === 429)) {
      t.is(apiError(c.res).code, 'tenant_concurrency_exceeded');
      t.is(c.upstream, undefined);
    }
    nodes().upstream.configure({ latencyMs: 0 });
    // Released in log on whichever node served them: the tenant gets in again on both.
    t.true(
      await eventually(async () => (await nodes().call(0, 'conc', GLOBEX)).res.status === 200),
    );
    t.true(
      await eventually(async () => (await nodes().call(1, 'conc', GLOBEX)).res.status === 200),
    );
  },
);

test.serial(
  `fair queue: max_concurrent ${SEATS} holds at the upstream for both nodes together`,
  async (t) => {
    const { upstream } = nodes();
    upstream.reset(); // the most-in-flight counter starts here
    upstream.configure({ latencyMs: 250 });
    t.teardown(() => upstream.configure({ latencyMs: 0 }));
    // 3 tenants x 4 requests per node: 24 at once, 8 times the capacity.
    const calls = await Promise.all(
      [GLOBEX, ACME, INITECH].flatMap((key) =>
        Array.from({ length: 8 }, (_, i) => nodes().call(i % 2, 'queue', key)),
      ),
    );
    t.deepEqual(
      calls.map((c) => c.res.status),
      calls.map(() => 200),
    );
    const max = upstream.stats().maxInFlight;
    t.true(max <= SEATS, `${max} requests at the upstream at once (capacity ${SEATS})`);
    t.true(max >= 2, `the flood did fill the shared seats (${max} at once)`);
    // Both nodes queued: each node's waiters were admitted from the one shared queue.
    const waited = (node: number) =>
      calls.filter((c, i) => i % 2 === node && Number(c.res.headers['x-queue-wait-ms']) > 0);
    t.true(waited(0).length > 0 && waited(1).length > 0, 'requests waited on both nodes');
  },
);

test.serial(
  "one scheduler: B's backlog queued through both nodes does not push A, on one node, behind all of it",
  async (t) => {
    const c = nodes();
    c.upstream.configure({ latencyMs: 150 });
    t.teardown(() => c.upstream.configure({ latencyMs: 0 }));
    const flood = Array.from({ length: 8 }, (_, i) => c.call(i % 2, 'fair', GLOBEX));
    await new Promise((r) => setTimeout(r, 100));
    const a = await c.call(1, 'fair', ACME);
    const floodRes = await Promise.all(flood);
    t.is(a.res.status, 200);
    t.true(floodRes.every((r) => r.res.status === 200));
    const aWait = Number(a.res.headers['x-queue-wait-ms']);
    const bWaits = floodRes.map((r) => Number(r.res.headers['x-queue-wait-ms']));
    // Per-node queues would serve A after node 1's share of B at best; one weighted fair
    // queue for the cluster serves A before most of B's whole backlog.
    const servedAfterA = bWaits.filter((w) => w > aWait + 100).length;
    t.true(servedAfterA >= 4, `A waited ${aWait} ms; B waited ${bWaits.join(', ')}`);
  },
);

test.serial(
  'a node that dies holding a lease and a seat: they come back after the lease TTL',
  async (t) => {
    const c = nodes();
    c.upstream.configure({ latencyMs: 3000 });
    t.teardown(() => c.upstream.configure({ latencyMs: 0 }));
    // Node 1 admits globex (its one concurrent request) and takes the upstream's one seat.
    const before = c.upstream.received.length;
    const doomed = c.call(1, 'dead', GLOBEX).catch((e: unknown) => e);
    await eventually(async () => Promise.resolve(c.upstream.received.length > before));
    t.is(c.upstream.received.length, before + 1, 'the request is at the upstream');
    // ... and dies there: no log phase ever releases them.
    await c.gateways[1]?.kill();
    t.true((await doomed) instanceof Error, 'the client lost its connection with the node');
    c.upstream.configure({ latencyMs: 0 });

    // Node 0 still sees the dead node's lease and seat, well within their TTL.
    const own = await c.call(0, 'dead', GLOBEX);
    t.is(own.res.status, 429);
    t.is(apiError(own.res).code, 'tenant_concurrency_exceeded');
    const other = await c.call(0, 'dead', ACME);
    t.is(other.res.status, 503);
    t.is(apiError(other.res).code, 'upstream_saturated');
    t.is(other.upstream, undefined);

    // After the TTL both expire by themselves: the tenant and the seat are usable again.
    const deadline = Date.now() + (DEAD_SEAT_TTL_S + 10) * 1000;
    let back: Awaited<ReturnType<RatelimitCluster['call']>> | undefined;
    while (Date.now() < deadline) {
      const r = await c.call(0, 'dead', GLOBEX);
      if (r.res.status === 200) {
        back = r;
        break;
      }
      await new Promise((res) => setTimeout(res, 250));
    }
    t.truthy(back, 'the lease came back');
    t.truthy(back?.upstream);
    t.is((await c.call(0, 'dead', ACME)).res.status, 200);
  },
);
