/**
 * Scale-out on real engines: three gateway nodes on one real 3-master Redis Cluster
 * (scripts/services/redis-cluster.sh). With GATEWAY=kong they are three real Kong 3.9.3 with
 * 1, 2 and 4 nginx workers, each with its own plugin servers; on the harness, three harness
 * gateways. tenant-auth and tenant-ratelimit, unchanged, configured with the cluster's URL.
 * The promises that must hold for the nodes together, not per node:
 * - a tenant's requests per minute and its concurrency cap, summed across the nodes;
 * - the fair queue's shares across tenants whose backlogs come through different nodes
 *   (Jain's index over the served requests ≥ 0.99), its seats held for all nodes together;
 * - a node that dies holding a seat and a lease: both come back by their TTL, the others go on.
 * Serial: the tests share the upstream's latency knob; the node kill is last. The cluster is
 * REDIS_CLUSTER_URL, or started by scripts/services/redis-cluster.sh when unset.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { startGateway, type Gateway } from '../../harness/index';
import { startKong, type KongGateway } from '../../kong-runner/index';
import { startMockUpstream, type MockUpstream } from '../../mock-upstream/index';
import { sharedClusterUrl } from '../integration/redis-cluster-service';
import {
  apiError,
  Closers,
  gatewayKind,
  pluginServerDir,
  send,
  type Sent,
} from '../helpers/frontdoor';

const WORKERS = [1, 2, 4] as const;
const SEATS = 2;
const DEAD_SEAT_TTL_S = 5;
const PLANS = { free: { tools_allowed: ['*'], weight: 1 } };
/** Three tenants of one plan (one weight), so fair shares are equal shares. */
const TENANTS = ['t-one', 't-two', 't-three'] as const;
/** Holds the seats while the three backlogs queue up. */
const BLOCKER = 't-blocker';

interface Nodes {
  readonly gateways: Gateway[];
  readonly upstream: MockUpstream;
}

let nodes: Nodes | undefined;
const closers = new Closers();

function config(upstreamUrl: string, redisUrl: string): Record<string, unknown> {
  const run = randomBytes(4).toString('hex');
  const routes: Array<{ name: string; config: Record<string, unknown> }> = [
    { name: 'rpm', config: { default_limits: { requests_per_minute: 1, request_burst: 6 } } },
    { name: 'conc', config: { default_limits: { max_concurrent: 2 } } },
    { name: 'fair', config: { queue: { max_concurrent: SEATS, max_wait_ms: 30_000 } } },
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
  return {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstreamUrl,
        routes: routes.map((r) => ({ name: r.name, paths: [`/${r.name}`], strip_path: true })),
      },
    ],
    plugins: routes.flatMap((r) => [
      { name: 'key-auth', route: r.name, config: { hide_credentials: true } },
      { name: 'tenant-auth', route: r.name, config: { plans: PLANS } },
      {
        name: 'tenant-ratelimit',
        route: r.name,
        config: {
          ...r.config,
          redis: {
            url: redisUrl,
            key_namespace: `so-${run}-${r.name}`,
            timeout_ms: 2000,
          },
        },
      },
    ]),
    consumers: [...TENANTS, BLOCKER].map((tenant) => ({
      username: tenant,
      custom_id: tenant,
      tags: ['plan:free'],
      keyauth_credentials: [{ key: `${tenant}-key` }],
    })),
  };
}

test.before(async () => {
  const redisUrl = await sharedClusterUrl();
  const upstream = await startMockUpstream();
  closers.add(() => upstream.close());
  const cfg = config(upstream.url, redisUrl);
  const pluginServers = {
    'tenant-auth': pluginServerDir('tenant-auth'),
    'tenant-ratelimit': pluginServerDir('tenant-ratelimit'),
  };
  const gateways: Gateway[] = [];
  for (const [node, workers] of WORKERS.entries()) {
    const gateway =
      gatewayKind() === 'kong'
        ? await startKong({ config: cfg, pluginServers, workers, label: `scale-node${node}` })
        : await startGateway({ config: cfg, pluginServers });
    closers.add(() => gateway.close());
    gateways.push(gateway);
  }
  nodes = { gateways, upstream };
});
test.after.always(() => closers.closeAll());

/** Repeats `attempt` until it returns true (a log phase runs after the response), at most `ms`. */
async function until(attempt: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await attempt()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function cluster(): Nodes {
  if (!nodes) throw new Error('the three nodes did not start');
  return nodes;
}

async function call(node: number, route: string, tenant: string): Promise<Sent> {
  const gateway = cluster().gateways[node];
  if (!gateway) throw new Error(`no node ${node}`);
  return send(`${gateway.url}/${route}/v1/chat/completions`, {
    headers: [
      ['apikey', `${tenant}-key`],
      ['x-test-id', randomUUID()],
    ],
    body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] },
  });
}

/** nginx worker processes under a Kong node's master (its pidfile in the prefix). */
function nginxWorkers(gateway: KongGateway): number {
  const master = readFileSync(path.join(gateway.prefix, 'pids', 'nginx.pid'), 'utf8').trim();
  let workers = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (ppid === master && cmd.includes('worker process')) workers++;
    } catch {
      // The process ended while we looked.
    }
  }
  return workers;
}

test.serial('three separate nodes; on Kong, with 1, 2 and 4 nginx workers', (t) => {
  const { gateways } = cluster();
  t.is(gateways.length, 3);
  t.is(new Set(gateways.map((g) => g.port)).size, 3);
  const pids = gateways.map((g) => g.pluginServerInfo('tenant-ratelimit').pid);
  t.is(new Set(pids).size, 3, `plugin servers ${pids.join(', ')}`);
  if (gatewayKind() === 'kong') {
    t.deepEqual(
      gateways.map((g) => nginxWorkers(g as KongGateway)),
      [...WORKERS],
    );
  }
});

test.serial(
  'requests per minute: one burst of 6 for the three nodes, not 6 per node',
  async (t) => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await call(i % 3, 'rpm', 't-one')).status);
    t.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429, 429, 429, 429]);
    // Another tenant's bucket is untouched, on every node.
    for (const node of [0, 1, 2]) t.is((await call(node, 'rpm', 't-two')).status, 200);
  },
);

test.serial('concurrency cap: 2 in flight across the three nodes, not 2 per node', async (t) => {
  const { upstream } = cluster();
  upstream.configure({ latencyMs: 1500 });
  t.teardown(() => upstream.configure({ latencyMs: 0 }));
  const calls = await Promise.all(
    Array.from({ length: 6 }, (_, i) => call(i % 3, 'conc', 't-one')),
  );
  t.deepEqual(calls.map((c) => c.status).sort(), [200, 200, 429, 429, 429, 429]);
  for (const c of calls.filter((x) => x.status === 429)) {
    t.is(apiError(c).code, 'tenant_concurrency_exceeded');
  }
  upstream.configure({ latencyMs: 0 });
  for (const node of [0, 1, 2]) {
    t.true(await until(async () => (await call(node, 'conc', 't-one')).status === 200));
  }
});

/** Jain's fairness index of the shares: 1 when equal, 1/n when one takes all. */
function jain(shares: readonly number[]): number {
  const sum = shares.reduce((a, b) => a + b, 0);
  const squares = shares.reduce((a, b) => a + b * b, 0);
  return (sum * sum) / (shares.length * squares);
}

test.serial(
  'fair queue: equal shares for three tenants queued through three nodes (Jain ≥ 0.99)',
  async (t) => {
    const { upstream } = cluster();
    upstream.reset();
    t.teardown(() => upstream.configure({ latencyMs: 0 }));
    // Another tenant holds both seats while the backlogs queue up, so the shares measure the
    // scheduler, not which node's requests happened to reach the queue first.
    upstream.configure({ latencyMs: 4000 });
    const blockers = [0, 1].map((node) => call(node, 'fair', BLOCKER));
    t.true(await until(() => Promise.resolve(upstream.received.length === SEATS)));
    upstream.configure({ latencyMs: 100 });
    // Each tenant's backlog of 20 comes through its own node: 60 requests, 2 seats.
    const PER_TENANT = 20;
    const calls = await Promise.all(
      TENANTS.flatMap((tenant, node) =>
        Array.from({ length: PER_TENANT }, () => call(node, 'fair', tenant)),
      ),
    );
    t.deepEqual(
      (await Promise.all(blockers)).map((c) => c.status),
      [200, 200],
    );
    t.deepEqual(
      calls.map((c) => c.status),
      calls.map(() => 200),
    );
    const max = upstream.stats().maxInFlight;
    t.true(max <= SEATS, `${max} at the upstream at once (capacity ${SEATS} for all nodes)`);
    // Shares while every tenant still had a backlog: the first three quarters served.
    const served = upstream.received
      .map((r) => r.headers['x-tenant-id'])
      .filter((id) => id !== BLOCKER)
      .slice(0, (TENANTS.length * PER_TENANT * 3) / 4);
    const shares = TENANTS.map((tenant) => served.filter((id) => id === tenant).length);
    const index = jain(shares);
    t.log(`served while all were backlogged: ${shares.join(' / ')}, Jain ${index.toFixed(4)}`);
    t.true(index >= 0.99, `shares ${shares.join(' / ')}: Jain ${index}`);
  },
);

test.serial('a node that dies holding a seat and a lease: both come back by TTL', async (t) => {
  const c = cluster();
  c.upstream.configure({ latencyMs: 3000 });
  t.teardown(() => c.upstream.configure({ latencyMs: 0 }));
  const before = c.upstream.received.length;
  // Node 2 (4 workers) admits t-one (its one concurrent request) and takes the one seat...
  const doomed = call(2, 'dead', 't-one').catch((e: unknown) => e);
  t.true(await until(() => Promise.resolve(c.upstream.received.length > before)));
  // ... and dies there: no log phase will release them.
  await c.gateways[2]?.kill();
  t.true((await doomed) instanceof Error, 'the client lost its connection with the node');
  c.upstream.configure({ latencyMs: 0 });

  // The other nodes see the dead node's lease and seat, within their TTL.
  const own = await call(0, 'dead', 't-one');
  t.is(own.status, 429);
  t.is(apiError(own).code, 'tenant_concurrency_exceeded');
  const other = await call(1, 'dead', 't-two');
  t.is(other.status, 503);
  t.is(apiError(other).code, 'upstream_saturated');
  // Tenants on other routes go on.
  t.is((await call(1, 'rpm', 't-three')).status, 200);

  const deadline = Date.now() + (DEAD_SEAT_TTL_S + 15) * 1000;
  let back = false;
  while (!back && Date.now() < deadline) {
    back = (await call(0, 'dead', 't-one')).status === 200;
    if (!back) await new Promise((r) => setTimeout(r, 250));
  }
  t.true(back, 'the lease and the seat came back by TTL');
  t.is((await call(1, 'dead', 't-two')).status, 200);
});
