/**
 * The soak of the whole chain (issue 22 part 4), shared by `npm run soak` (bench/soak.ts, 100,000
 * requests) and its short variant in CI (test/plugins/soak-short.test.ts):
 * - three gateway nodes on the repo's kong.yml (real Kong 3.9.3 with 1, 2 and 4 nginx workers
 *   when GATEWAY=kong, else three harness gateways), each with its own plugin server(s) and its
 *   own metrics ports (so each process's event-loop lag can be read), sharing one Redis (the
 *   Redis Cluster when REDIS_CLUSTER_URL is set), Milvus (this run's collections) and one mock
 *   upstream that sums the usage it answered per tenant;
 * - an open-loop mix at a fixed rate, spread over the nodes: chat misses, exact cache hits,
 *   streams, retrieval of each tenant's own seeded knowledge, 429s over a tenant's limit, 401s,
 *   400s, a model-tier rewrite and model lists;
 * - after it, the ledger in Redis compared with what the upstream answered, tenant by tenant.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { startGateway, type Gateway } from '../../harness/index';
import { startKong } from '../../kong-runner/index';
import { closeAllRedis, createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';
import { connectMilvus } from '../integration/services';
import { seedKnowledge } from './chain-config';
import { gatewayKind, pluginServerDir, type GatewayKind, type OnClose } from './frontdoor';
import { startKongYmlDoor, type KongYmlDoor, type KongYmlEntry } from './kong-yml-door';
import { freePort } from './upstreams';

/** nginx workers of the three nodes (the real Kong; the harness has none). */
export const SOAK_WORKERS = [1, 2, 4] as const;

/** The chain's plugins: each gets a metrics port of its own on every node. */
const PLUGINS = [
  'tenant-auth',
  'tenant-ratelimit',
  'tenant-cache',
  'token-meter',
  'retrieval-injector',
  'circuit-breaker',
] as const;

/** Every chat of the mix asks at most this many tokens: answers stay short, estimates small. */
const MAX_TOKENS = 24;
/** The over-limit tenant's requests a minute, cluster-wide (its burst: 5). */
export const OVER_LIMIT_RPM = 30;
/**
 * token-meter's reservation TTL in the soak (kong.yml: the default, 600 s). A reservation is
 * held while its request runs (seconds here); one whose holder never settles it (a reserve
 * whose Redis reply missed the deadline after the script ran, answered 503) is freed by this
 * TTL, and the soak waits for that before it calls a reservation left over.
 */
export const RESERVATION_TTL_S = 30;

export interface SoakTenants {
  /** Plan pro (semantic cache on, top_k 4), knowledge seeded. */
  pro: string;
  /** Plan free (exact cache only, top_k 2), knowledge seeded. */
  free: string;
  /** Plan free with OVER_LIMIT_RPM: mostly refused with 429. */
  limited: string;
}

export interface SoakNode {
  gateway: Gateway;
  /** nginx workers (real Kong), or 0 on the harness. */
  workers: number;
  /** Metrics port of each plugin of the chain on this node (PLUGINS order). */
  metricsPorts: Record<string, number>;
}

export interface SoakCluster {
  kind: GatewayKind;
  door: KongYmlDoor;
  nodes: SoakNode[];
  redis: RedisClient;
  redisUrl: string;
  tenants: SoakTenants;
  /** The pro tenant's memo holds this codename; retrieval puts it in front of the upstream. */
  codename: string;
}

const hex = (n: number) => randomBytes(n).toString('hex');

function adjust(
  p: KongYmlEntry,
  tenants: SoakTenants,
  at: { collection: string; semCollection: string; ports: Record<string, number> },
): void {
  const c = p.config;
  if (!c) return;
  const port = at.ports[p.name];
  if (port !== undefined) c.metrics_port = port;
  const own = (c.tenants ?? {}) as Record<string, unknown>;
  if (p.name === 'tenant-ratelimit') {
    // The served tenants: roomy limits, so what is measured is the chain, not a refusal loop.
    const roomy = {
      requests_per_minute: 1_000_000,
      request_burst: 100_000,
      tokens_per_minute: 100_000_000,
      max_concurrent: 1000,
    };
    c.tenants = {
      ...own,
      [tenants.pro]: roomy,
      [tenants.free]: roomy,
      [tenants.limited]: { requests_per_minute: OVER_LIMIT_RPM, request_burst: 5 },
    };
    c.queue = { ...(c.queue as object), max_concurrent: 256, tokens_per_minute: 500_000_000 };
  }
  if (p.name === 'circuit-breaker') {
    // kong.yml's bulkhead (32 in flight per tenant and node, 4 waiting for 2 s) is a limit
    // like tenant-ratelimit's: a Milvus or embeddings stall of a few seconds on a loaded
    // machine piles a tenant's requests up past it and the soak measures 503
    // tenant_bulkhead_full (26 of 1,000 in one CI run on the harness) instead of the chain.
    // The bulkhead's own behaviour is tested in test/plugins/circuit-breaker*.
    c.bulkhead = {
      ...(c.bulkhead as object),
      max_in_flight: 1000,
      queue: 1000,
      queue_timeout_ms: 30_000,
    };
  }
  if (p.name === 'token-meter') {
    // Budgets no soak reaches: every served request settles at its exact usage.
    const ample = { budget_tokens: 2_000_000_000, budget_usd: 1_000_000 };
    c.tenants = { ...own, [tenants.pro]: ample, [tenants.free]: ample, [tenants.limited]: ample };
    c.reservation_ttl_seconds = RESERVATION_TTL_S;
  }
  if (p.name === 'tenant-cache') {
    const sem = c.semantic as Record<string, Record<string, unknown>>;
    c.semantic = {
      ...sem,
      milvus: {
        ...sem.milvus,
        address: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
        collection: at.semCollection,
      },
      // A machine shared with other work: a slow lookup is a miss either way (exact bill).
      lookup_timeout_ms: 8000,
      store_timeout_ms: 8000,
    };
  }
  if (p.name === 'retrieval-injector') {
    c.milvus = {
      ...(c.milvus as object),
      address: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
      collection: at.collection,
      num_partitions: 16,
      // kong.yml's 500 ms search deadline answers 503 retrieval_unavailable when Milvus is slow;
      // on a 2-core machine shared with other work it is, now and then (seen at load 14). The
      // soak is about leaks and the bill, so its deadlines are generous (as chain-scale-out's).
      search_timeout_ms: 10000,
      connect_timeout_ms: 30000,
    };
    c.embeddings = { ...(c.embeddings as object), timeout_ms: 10000 };
  }
}

/** kong.yml's chain plugins that have a plugin-server directory (the rest are Kong's own). */
function pluginServers(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of (config.plugins as KongYmlEntry[] | undefined) ?? []) {
    try {
      out[p.name] = pluginServerDir(p.name);
    } catch {
      // one of Kong's bundled plugins
    }
  }
  return out;
}

async function portsForNode(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of PLUGINS) out[name] = await freePort();
  return out;
}

/**
 * Three nodes of the whole chain. Node 0 is kong.yml's door (its mock upstream, its Redis
 * namespace); nodes 1 and 2 run the same config with only the metrics ports changed (three
 * processes cannot listen on one port), the same secrets, the same plugin servers.
 */
export async function startSoakCluster(onClose: OnClose): Promise<SoakCluster> {
  const kind = gatewayKind();
  const run = hex(3);
  const tenants: SoakTenants = {
    pro: `soak-pro-${run}`,
    free: `soak-free-${run}`,
    limited: `soak-lim-${run}`,
  };
  const redisUrl =
    process.env.REDIS_CLUSTER_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const redis = createRedis({ url: redisUrl, commandTimeoutMs: 5000 });
  onClose(closeAllRedis);
  await waitForRedis(redis, 10_000);
  const milvus: MilvusClient = await connectMilvus();
  const collection = `kta_soak_k_${hex(5)}`;
  const semCollection = `kta_soak_s_${hex(5)}`;
  onClose(async () => {
    for (const c of [collection, semCollection])
      await milvus.dropCollection({ collection_name: c }).catch(() => undefined);
    milvus.closeConnection();
  });
  const env = {
    KTA_KNOWLEDGE_SECRET: hex(32),
    KTA_CACHE_MASTER_KEY: hex(32),
    KTA_CAPTURE_SECRET: hex(32),
  };
  const ports = [await portsForNode(), await portsForNode(), await portsForNode()];
  const door = await startKongYmlDoor(
    onClose,
    (p) => adjust(p, tenants, { collection, semCollection, ports: ports[0] ?? {} }),
    [
      { id: tenants.pro, plan: 'pro' },
      { id: tenants.free, plan: 'free' },
      { id: tenants.limited, plan: 'free' },
    ].map(({ id, plan }) => ({
      username: `${id}-app`,
      custom_id: id,
      tags: [`plan:${plan}`],
      keyauth_credentials: [{ key: `${id}-key` }],
    })),
    [],
    { redisUrl, env, ...(kind === 'kong' ? { workers: [SOAK_WORKERS[0]] } : {}) },
    1,
  );
  const nodes: SoakNode[] = [
    {
      gateway: door.gateway,
      workers: kind === 'kong' ? SOAK_WORKERS[0] : 0,
      metricsPorts: ports[0] ?? {},
    },
  ];
  const servers = pluginServers(door.config);
  for (const node of [1, 2]) {
    const metricsPorts = ports[node] ?? {};
    const config = structuredClone(door.config);
    for (const p of (config.plugins as KongYmlEntry[] | undefined) ?? []) {
      const port = metricsPorts[p.name];
      if (p.config && port !== undefined) p.config.metrics_port = port;
    }
    const workers = SOAK_WORKERS[node] ?? 1;
    const opts = { config, pluginServers: servers, env };
    const gateway =
      kind === 'kong'
        ? await startKong({ ...opts, workers, label: `soak-node${node}` })
        : await startGateway(opts);
    onClose(() => gateway.close());
    nodes.push({ gateway, workers: kind === 'kong' ? workers : 0, metricsPorts });
  }
  const codename = `NIMBUS${hex(4)}`;
  await seedKnowledge(
    { milvus, redis, collection, secret: env.KTA_KNOWLEDGE_SECRET, url: door.upstream.url },
    [
      [tenants.pro, `Project memo: the launch codename is ${codename}. The launch is in May.`],
      [tenants.free, 'Team handbook: the launch party is on the roof; bring a jacket.'],
    ],
    `${door.namespace}ri`,
  );
  return { kind, door, nodes, redis, redisUrl, tenants, codename };
}

/** The kinds of request in the mix; each names what it is for in the report. */
export type RequestKind =
  | 'cacheable (pro)'
  | 'cacheable (free)'
  | 'chat + retrieval (pro)'
  | 'chat + retrieval (free)'
  | 'stream (pro)'
  | 'stream (free)'
  | 'over the limit'
  | 'no key'
  | 'wrong key'
  | 'malformed JSON'
  | 'model tier rewrite'
  | 'model list';

/** Twenty slots: request i is of kind MIX[i % 20], through node i % 3. */
export const MIX: readonly RequestKind[] = [
  'cacheable (pro)',
  'cacheable (pro)',
  'cacheable (pro)',
  'cacheable (pro)',
  'cacheable (free)',
  'cacheable (free)',
  'chat + retrieval (pro)',
  'chat + retrieval (pro)',
  'chat + retrieval (pro)',
  'chat + retrieval (free)',
  'stream (pro)',
  'stream (pro)',
  'stream (free)',
  'over the limit',
  'over the limit',
  'no key',
  'wrong key',
  'malformed JSON',
  'model tier rewrite',
  'model list',
];

interface Outgoing {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** Its tenant, for the client's own count of cache hits. */
  tenant?: string;
}

function outgoing(i: number, t: SoakTenants): Outgoing {
  const kind = MIX[i % MIX.length] as RequestKind;
  const json = (tenant: string, body: object): Outgoing => ({
    method: 'POST',
    path: '/v1/chat/completions',
    headers: { apikey: `${tenant}-key`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: MAX_TOKENS, ...body }),
    tenant,
  });
  const ask = (content: string) => [{ role: 'user', content }];
  const stream = { stream: true, stream_options: { include_usage: true }, temperature: 0.7 };
  switch (kind) {
    case 'cacheable (pro)':
      return json(t.pro, {
        temperature: 0,
        messages: ask(`Which dates does the memo give? #${i % 40}`),
      });
    case 'cacheable (free)':
      return json(t.free, {
        temperature: 0,
        messages: ask(`What does the handbook say? #${i % 30}`),
      });
    case 'chat + retrieval (pro)':
      return json(t.pro, {
        temperature: 0.7,
        messages: ask(`What is the launch codename in the project memo? (ref ${i})`),
      });
    case 'chat + retrieval (free)':
      return json(t.free, {
        temperature: 0.7,
        messages: ask(`Where is the launch party in the team handbook? (ref ${i})`),
      });
    case 'stream (pro)':
      return json(t.pro, { ...stream, messages: ask(`Tell me about the project memo, ${i}`) });
    case 'stream (free)':
      return json(t.free, { ...stream, messages: ask(`Tell me about the team handbook, ${i}`) });
    case 'over the limit':
      return json(t.limited, { temperature: 0.7, messages: ask(`one more, ${i}`) });
    case 'no key':
      return {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('no key') }),
      };
    case 'wrong key':
      return {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { apikey: `wrong-${i % 7}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: ask('wrong key') }),
      };
    case 'malformed JSON':
      return {
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { apikey: `${t.pro}-key`, 'content-type': 'application/json' },
        body: '{"model": "gpt-4o-mini", "messages": [',
      };
    case 'model tier rewrite':
      // Plan free asks for gpt-4o: tenant-auth serves gpt-4o-mini, and that is what is billed.
      return json(t.free, {
        model: 'gpt-4o',
        temperature: 0.7,
        messages: ask(`the big model please, ${i}`),
      });
    case 'model list':
      return { method: 'GET', path: '/v1/models', headers: { apikey: `${t.pro}-key` } };
  }
}

export interface LoadOptions {
  requests: number;
  /** Requests started a second, spread over the nodes (open loop: not waiting for answers). */
  ratePerSecond: number;
  /** Bound on requests in flight; a start that would pass it waits and counts as late. */
  maxInFlight?: number;
  /** Called as requests finish (for progress lines and the RSS stretches). */
  onDone?: (done: number) => void;
}

export interface LoadResult {
  seconds: number;
  /** Statuses by kind; -1: a connection error. */
  byKind: Map<RequestKind, Map<number, number>>;
  statuses: Map<number, number>;
  /** X-Cache-Status: HIT answers the client saw, by tenant. */
  hits: Map<string, number>;
  /** 5xx answers by "status code" (the error body's code). */
  serverErrors: Map<string, number>;
  /** How late requests started against the schedule, ms: p50, p99, max. */
  late: { p50: number; p99: number; max: number };
  maxInFlight: number;
}

const count = <K>(m: Map<K, number>, k: K, n = 1) => m.set(k, (m.get(k) ?? 0) + n);

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/** The mix, open loop at `ratePerSecond`: request i starts at i / rate s, through node i % 3. */
export async function runMixedLoad(cluster: SoakCluster, opts: LoadOptions): Promise<LoadResult> {
  const maxInFlight = opts.maxInFlight ?? 512;
  const agents = cluster.nodes.map(() => new http.Agent({ keepAlive: true, maxSockets: 128 }));
  const byKind = new Map<RequestKind, Map<number, number>>();
  const statuses = new Map<number, number>();
  const hits = new Map<string, number>();
  const serverErrors = new Map<string, number>();
  const late = new Float64Array(opts.requests);
  let inFlight = 0;
  let peak = 0;
  let done = 0;
  let next = 0;
  const t0 = performance.now();

  const one = (i: number): Promise<void> => {
    const node = cluster.nodes[i % cluster.nodes.length] as SoakNode;
    const out = outgoing(i, cluster.tenants);
    const kind = MIX[i % MIX.length] as RequestKind;
    return new Promise<void>((resolve) => {
      const finish = (status: number, cache: string | undefined, body: string) => {
        count(statuses, status);
        const k = byKind.get(kind) ?? new Map<number, number>();
        byKind.set(kind, count(k, status));
        if (status === 200 && cache === 'HIT' && out.tenant) count(hits, out.tenant);
        if (status >= 500) {
          let code = 'no OpenAI-style body';
          try {
            const e = (JSON.parse(body) as { error?: { code?: unknown } }).error;
            if (typeof e?.code === 'string') code = e.code;
          } catch {
            // counted as such
          }
          count(serverErrors, `${status} ${code}`);
        }
        resolve();
      };
      const req = http.request(
        {
          host: '127.0.0.1',
          port: node.gateway.port,
          method: out.method,
          path: out.path,
          headers: out.headers,
          agent: agents[i % agents.length],
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          // Every answer is read to its end (a stream included): only 5xx bodies are kept.
          res.on('data', (d: Buffer) => {
            if (status >= 500) chunks.push(d);
          });
          res.on('end', () => {
            const cache = res.headers['x-cache-status'];
            finish(
              status,
              typeof cache === 'string' ? cache : undefined,
              Buffer.concat(chunks).toString(),
            );
          });
          res.on('error', () => finish(-1, undefined, ''));
        },
      );
      req.on('error', () => finish(-1, undefined, ''));
      req.end(out.body);
    });
  };

  await new Promise<void>((resolve) => {
    const launch = () => {
      const due = Math.min(
        opts.requests,
        Math.floor(((performance.now() - t0) / 1000) * opts.ratePerSecond) + 1,
      );
      while (next < due && inFlight < maxInFlight) {
        const i = next++;
        late[i] = performance.now() - (t0 + (i * 1000) / opts.ratePerSecond);
        inFlight++;
        peak = Math.max(peak, inFlight);
        void one(i).then(() => {
          inFlight--;
          done++;
          opts.onDone?.(done);
          if (done === opts.requests) resolve();
        });
      }
      if (next < opts.requests) setTimeout(launch, 4);
    };
    launch();
  });
  const seconds = (performance.now() - t0) / 1000;
  for (const a of agents) a.destroy();
  const sorted = late.slice().sort();
  return {
    seconds,
    byKind,
    statuses,
    hits,
    serverErrors,
    late: {
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted[sorted.length - 1] ?? 0,
    },
    maxInFlight: peak,
  };
}

/** One tenant's bill from both sides. */
export interface LedgerRow {
  tenant: string;
  /** What the upstream answered with usage (the mock's own count). */
  upstream: { answers: number; prompt: number; completion: number };
  /** token-meter's ledger entries in Redis. */
  ledger: {
    /** Entries for answers the upstream gave (cache_hit 0). */
    metered: number;
    prompt: number;
    completion: number;
    /** Entries of cache hits (cache_hit 1) and the tokens they carry (0 by the README). */
    hits: number;
    hitTokens: number;
    /** Entries flagged `estimated` (no usage seen): none expected. */
    estimated: number;
    /** Request ids seen more than once. */
    duplicates: number;
  };
  /** Cache hits the client saw (X-Cache-Status: HIT). */
  clientHits: number;
  /** Budget reservations still held after settlement and their TTL (none expected). */
  reservationsLeft: number;
  /**
   * Reservations never settled by a log or release that their TTL ended instead. Since the
   * expiry sweep (token-meter, includes/budget-expiry.lua) such a reservation, if its reserve
   * stored what it bills, becomes an `estimated` ledger entry with settled_by=expiry, which the
   * soak's "nothing estimated" check then counts: none is expected.
   */
  reservationsExpired: number;
}

export interface LedgerCheck {
  rows: LedgerRow[];
  /** Chat usage the upstream answered without a tenant header: none expected. */
  untenanted: number;
  /** Seconds waited after the load for the last settlement. */
  settleSeconds: number;
  exact: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (up to `timeoutMs`) until each tenant's ledger holds one entry per upstream answer and
 * per cache hit the client saw (log phases run after the response), then compares, to the
 * token: ledger prompt/completion of non-hit entries = the upstream's; hit entries bill 0 tokens
 * (plugins/token-meter/README.md: "a ledger entry with 0 upstream tokens and cache_hit = 1").
 */
export async function settleAndCompare(
  cluster: SoakCluster,
  load: LoadResult,
  since: number,
  timeoutMs = 60_000,
): Promise<LedgerCheck> {
  const meter = createKeyspace(`${cluster.door.namespace}tm`);
  const periods = [...new Set([periodAt('month', since).id, periodAt('month', Date.now()).id])];
  const usage = cluster.door.upstream.usage();
  const tenants = Object.values(cluster.tenants);
  const t0 = Date.now();
  const expected = (tenant: string) => (usage[tenant]?.answers ?? 0) + (load.hits.get(tenant) ?? 0);
  const entries = async (tenant: string) => {
    let n = 0;
    for (const p of periods)
      n += await cluster.redis.xLen(meter.usageLedger(parseTenantId(tenant), p));
    return n;
  };
  // Reservations not yet expired (scores are expiry times, ms): what still holds budget. An
  // expired one holds nothing and is reaped by the tenant's next reserve.
  const reservations = async (tenant: string, live = true) => {
    let n = 0;
    for (const p of periods) {
      const key = meter.budgetReservations(parseTenantId(tenant), p);
      n += live
        ? await cluster.redis.zCount(key, Date.now(), '+inf')
        : await cluster.redis.zCard(key);
    }
    return n;
  };
  for (;;) {
    let settled = true;
    for (const tenant of tenants) {
      if ((await entries(tenant)) < expected(tenant) || (await reservations(tenant)) > 0)
        settled = false;
    }
    if (settled || Date.now() - t0 > Math.max(timeoutMs, RESERVATION_TTL_S * 1000 + 10_000)) break;
    await sleep(500);
  }
  // A moment more: an entry written twice would land now.
  await sleep(1000);
  const rows: LedgerRow[] = [];
  for (const tenant of tenants) {
    const ledger = {
      metered: 0,
      prompt: 0,
      completion: 0,
      hits: 0,
      hitTokens: 0,
      estimated: 0,
      duplicates: 0,
    };
    const rids = new Set<string>();
    for (const p of periods) {
      const key = meter.usageLedger(parseTenantId(tenant), p);
      let start = '-';
      for (;;) {
        const page = (await cluster.redis.xRange(key, start, '+', { COUNT: 5000 })) ?? [];
        for (const e of page) {
          const m = e.message;
          const prompt = Number(m.prompt ?? 0);
          const completion = Number(m.completion ?? 0);
          if (m.cache_hit === '1') {
            ledger.hits++;
            ledger.hitTokens += prompt + completion;
          } else {
            ledger.metered++;
            ledger.prompt += prompt;
            ledger.completion += completion;
          }
          if (m.estimated === '1') ledger.estimated++;
          const rid = m.rid ?? '';
          if (rids.has(rid)) ledger.duplicates++;
          rids.add(rid);
        }
        const last = page[page.length - 1];
        if (page.length < 5000 || !last) break;
        start = `(${last.id}`;
      }
    }
    rows.push({
      tenant,
      upstream: usage[tenant] ?? { answers: 0, prompt: 0, completion: 0 },
      ledger,
      clientHits: load.hits.get(tenant) ?? 0,
      reservationsLeft: await reservations(tenant),
      reservationsExpired: (await reservations(tenant, false)) - (await reservations(tenant)),
    });
  }
  const untenanted = usage['']?.answers ?? 0;
  const exact =
    untenanted === 0 &&
    rows.every(
      (r) =>
        r.ledger.metered === r.upstream.answers &&
        r.ledger.prompt === r.upstream.prompt &&
        r.ledger.completion === r.upstream.completion &&
        r.ledger.hits === r.clientHits &&
        r.ledger.hitTokens === 0 &&
        r.ledger.estimated === 0 &&
        r.ledger.duplicates === 0 &&
        r.reservationsLeft === 0,
    );
  return { rows, untenanted, settleSeconds: (Date.now() - t0) / 1000, exact };
}

/**
 * Chat requests among the mock's last 10,000 that carried a tenant's own knowledge (the
 * retrieval fence, and for the pro tenant its codename), by tenant: retrieval really ran.
 */
export function retrievalSeen(cluster: SoakCluster): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of cluster.door.upstream.received) {
    if (r.path !== '/v1/chat/completions') continue;
    const body = r.rawBody.toString('utf8');
    if (!body.includes('<<<KNOWLEDGE-')) continue;
    const tenant = r.headers['x-tenant-id'];
    if (typeof tenant !== 'string') continue;
    if (tenant === cluster.tenants.pro && !body.includes(cluster.codename)) continue;
    count(out, tenant);
  }
  return out;
}

/**
 * Before the load: one retrieval chat per tenant through every node until the upstream has
 * seen both tenants' knowledge (Milvus makes fresh inserts searchable within seconds), so every
 * node's plugin servers are started (and serve their metrics ports) and retrieval is proven on.
 * These requests are billed like any other and are part of the comparison.
 */
export async function warmUp(cluster: SoakCluster, timeoutMs = 90_000): Promise<void> {
  const t0 = Date.now();
  for (let round = 0; ; round++) {
    for (const [node, n] of cluster.nodes.entries()) {
      for (const tenant of [cluster.tenants.pro, cluster.tenants.free]) {
        const res = await fetch(`${n.gateway.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { apikey: `${tenant}-key`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            max_tokens: MAX_TOKENS,
            temperature: 0.7,
            messages: [
              {
                role: 'user',
                content: `What is the launch codename in the project memo, and where is the launch party in the team handbook? (warm-up ${round}.${node})`,
              },
            ],
          }),
        });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`warm-up through node ${node}: ${res.status}`);
      }
    }
    const seen = retrievalSeen(cluster);
    if (seen.has(cluster.tenants.pro) && seen.has(cluster.tenants.free)) return;
    if (Date.now() - t0 > timeoutMs)
      throw new Error('retrieval never injected the seeded knowledge');
    await sleep(1000);
  }
}
