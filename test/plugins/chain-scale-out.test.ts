/**
 * Scale-out of the whole chain on real engines: three gateway nodes running kong.yml as shipped
 * (tenant-auth, tenant-ratelimit, tenant-cache with its semantic cache, token-meter with the
 * usage snippet, retrieval-injector, circuit-breaker), every Redis-backed plugin on one real
 * 3-master Redis Cluster (scripts/services/redis-cluster.sh), retrieval and the semantic cache
 * on the shared Milvus in this run's own collections. With GATEWAY=kong: three real Kong 3.9.3
 * with 1, 2 and 4 nginx workers, each with its own plugin server; else three harness gateways.
 * The promises that hold for the nodes together, not per node:
 * - a tenant's tokens per minute: one bucket for the three nodes (not three);
 * - a budget: concurrent requests through all three nodes never spend more than it, and the
 *   ledger is exact (one entry per served request, the upstream's usage to the token);
 * - one cache: an answer stored through node 0 is a hit through nodes 1 and 2, never for
 *   another tenant; retrieval through any node finds the tenant's own knowledge only;
 * - a node that dies with a budget reservation held: the others count it until its TTL, then
 *   the tenant is served again; other tenants go on meanwhile.
 * Serial: the node kill is last.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import type { KongGateway } from '../../kong-runner/index';
import { closeAllRedis, type RedisClusterClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import type { MockUpstream } from '../../mock-upstream/index';
import { periodAt } from '../../plugins/token-meter/period';
import { seedKnowledge } from '../helpers/chain-config';
import { apiError, Closers, gatewayKind, send, type Sent } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor, type KongYmlEntry } from '../helpers/kong-yml-door';
import { startExtraUpstream } from '../helpers/upstreams';
import { connectMilvus } from '../integration/services';
import { connectCluster, sharedClusterUrl } from '../integration/redis-cluster-service';

const WORKERS = [1, 2, 4] as const;
const hex = (n: number) => randomBytes(n).toString('hex');
const run = hex(3);
/** Tenants of this run, all on plan pro (kong.yml's), each with the overrides its case needs. */
const T = {
  tpm: `cso-tpm-${run}`,
  tpm2: `cso-tpm2-${run}`,
  budget: `cso-bud-${run}`,
  cacheP: `cso-cp-${run}`,
  cacheQ: `cso-cq-${run}`,
  docA: `cso-da-${run}`,
  docB: `cso-db-${run}`,
  dying: `cso-w-${run}`,
  other: `cso-o-${run}`,
} as const;
type Who = keyof typeof T;

/** A bucket of 4,000 refilled at 1,000 a minute: a refused call stays refused for a minute. */
const TPM = { rate: 1000, burst: 4000 };
/** About 1,500 prompt tokens: two fit the bucket of 4,000, a third does not. */
const TPM_PROMPT = 'lorem '.repeat(1500);
const BUDGET = 3000;
const BUDGET_CALLS = 36;
/** About 170 prompt tokens a call: 36 calls use twice the budget, 12 per node do not. */
const BUDGET_PROMPT = 'lorem '.repeat(150);
const DYING_BUDGET = 260;
const DYING_MAX_TOKENS = 220;
const RESERVATION_TTL_S = 10;

interface Fixture {
  door: KongYmlDoor;
  slow: MockUpstream;
  redis: RedisClusterClient;
  milvus: MilvusClient;
  meter: Keyspace;
  cache: Keyspace;
  codename: string;
}

let fixture: Fixture | undefined;
const closers = new Closers();

function adjust(
  p: KongYmlEntry,
  slow: MockUpstream,
  at: { collection: string; semCollection: string; secretFile: string },
): void {
  const c = p.config as Record<string, unknown>;
  const tenants = (c.tenants ?? {}) as Record<string, unknown>;
  const milvus = { address: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530' };
  if (p.name === 'tenant-ratelimit') {
    c.tenants = {
      ...tenants,
      [T.tpm]: { tokens_per_minute: TPM.rate, token_burst: TPM.burst },
      [T.tpm2]: { tokens_per_minute: TPM.rate, token_burst: TPM.burst },
      // The budget case sends all its calls at once: the budget is the limit, not the cap.
      [T.budget]: { max_concurrent: 256 },
    };
  }
  if (p.name === 'token-meter') {
    c.tenants = {
      ...tenants,
      [T.budget]: { budget_tokens: BUDGET },
      [T.dying]: { budget_tokens: DYING_BUDGET },
    };
    c.reservation_ttl_seconds = RESERVATION_TTL_S;
  }
  if (p.name === 'tenant-cache') {
    const sem = c.semantic as Record<string, Record<string, unknown>>;
    c.semantic = {
      ...sem,
      milvus: {
        ...sem.milvus,
        ...milvus,
        collection: at.semCollection,
        consistency_level: 'Strong',
      },
      lookup_timeout_ms: 8000,
      store_timeout_ms: 8000,
    };
  }
  if (p.name === 'retrieval-injector') {
    c.milvus = {
      ...(c.milvus as object),
      ...milvus,
      collection: at.collection,
      num_partitions: 16,
      consistency_level: 'Strong',
      search_timeout_ms: 10000,
      connect_timeout_ms: 30000,
    };
    c.encryption = { secret_file: at.secretFile };
  }
  if (p.name === 'circuit-breaker') {
    // The dying tenant's stream goes to a slow upstream of its own: slow enough to kill a node
    // mid-stream, without slowing anyone else down.
    const ups = c.upstreams as Record<string, unknown>;
    ups.slow = { host: '127.0.0.1', port: slow.port, breaker_scope: 'tenant' };
    c.tenants = { ...tenants, [T.dying]: { upstream: 'slow' } };
  }
}

test.before(async () => {
  const clusterUrl = await sharedClusterUrl();
  const redis = await connectCluster(clusterUrl, 3000);
  closers.add(closeAllRedis);
  const milvus = await connectMilvus();
  closers.add(() => {
    milvus.closeConnection();
  });
  const collection = `kta_cso_k_${hex(5)}`;
  const semCollection = `kta_cso_s_${hex(5)}`;
  closers.add(async () => {
    for (const c of [collection, semCollection])
      await milvus.dropCollection({ collection_name: c }).catch(() => undefined);
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-cso-'));
  closers.add(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const secret = hex(32);
  const secretFile = path.join(dir, 'knowledge.secret');
  writeFileSync(secretFile, secret, { mode: 0o644 });
  const slow = await startExtraUpstream(closers.add, { streamChunkDelayMs: 200 });

  const door = await startKongYmlDoor(
    closers.add,
    (p) => adjust(p, slow, { collection, semCollection, secretFile }),
    Object.values(T).map((id) => ({
      username: `${id}-app`,
      custom_id: id,
      tags: ['plan:pro'],
      keyauth_credentials: [{ key: `${id}-key` }],
    })),
    [],
    { redisUrl: clusterUrl, workers: WORKERS },
    WORKERS.length,
  );
  const codename = `NIMBUS${hex(4)}`;
  await seedKnowledge(
    { milvus, redis, collection, secret, url: door.upstream.url },
    [
      [T.docA, `Project memo: the launch codename is ${codename}. The launch is in May.`],
      [T.docB, 'Team handbook: the launch party is on the roof; bring a jacket.'],
    ],
    `${door.namespace}ri`,
  );
  fixture = {
    door,
    slow,
    redis,
    milvus,
    meter: createKeyspace(`${door.namespace}tm`),
    cache: createKeyspace(`${door.namespace}tc`),
    codename,
  };
});
test.after.always(() => closers.closeAll());

function fx(): Fixture {
  if (!fixture) throw new Error('the three nodes did not start');
  return fixture;
}

function nodeUrl(node: number): string {
  const g = fx().door.gateways[node];
  if (!g) throw new Error(`no node ${node}`);
  return g.url;
}

interface Call {
  res: Sent;
  testId: string;
}

async function chat(node: number, who: Who, body: Record<string, unknown>): Promise<Call> {
  const testId = randomUUID();
  const res = await send(`${nodeUrl(node)}/v1/chat/completions`, {
    headers: [
      ['apikey', `${T[who]}-key`],
      ['x-test-id', testId],
    ],
    body: { model: 'gpt-4o-mini', ...body },
  });
  return { res, testId };
}

const ask = (content: string, extra: Record<string, unknown> = {}) => ({
  temperature: 1,
  max_tokens: 16,
  messages: [{ role: 'user', content }],
  ...extra,
});

async function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
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

const usageOf = (r: Sent) =>
  (r.json as { usage?: { prompt_tokens: number; completion_tokens: number } }).usage;

test.serial(
  'three nodes of the whole chain on the cluster; on Kong, 1, 2 and 4 workers',
  async (t) => {
    const f = fx();
    t.is(f.door.gateways.length, 3);
    const pids = f.door.gateways.map((g) => g.pluginServerInfo('token-meter').pid);
    t.is(new Set(pids).size, 3, `plugin servers ${pids.join(', ')}`);
    if (gatewayKind() === 'kong') {
      t.deepEqual(
        f.door.gateways.map((g) => nginxWorkers(g as KongGateway)),
        [...WORKERS],
      );
    }
    for (const node of [0, 1, 2]) {
      const { res } = await chat(node, 'other', ask(`hello from node ${node}`));
      t.is(res.status, 200, res.text.slice(0, 300));
      t.is(res.headers['x-ratelimit-scope'], undefined, 'limits are cluster-wide, not per node');
    }
    // The three nodes' ledger entries are in the cluster, in one stream.
    const ledger = f.meter.usageLedger(parseTenantId(T.other), periodAt('month', Date.now()).id);
    await until('the three settlements', async () => (await f.redis.xLen(ledger)) === 3);
  },
);

test.serial('tokens per minute: one bucket for the three nodes, not one per node', async (t) => {
  const statuses: number[] = [];
  const refused: Sent[] = [];
  for (let i = 0; i < 6; i++) {
    const { res } = await chat(i % 3, 'tpm', ask(`${TPM_PROMPT} ${i}`));
    statuses.push(res.status);
    if (res.status === 429) refused.push(res);
    t.is(res.headers['x-ratelimit-scope'], undefined);
  }
  // Per node, each would have admitted two: six 200s.
  t.deepEqual(statuses, [200, 200, 429, 429, 429, 429]);
  for (const r of refused) t.is(apiError(r).code, 'tenant_tokens_per_minute_exceeded');
  // Another tenant with the same limit has its own bucket, through every node.
  for (const node of [2, 1]) {
    const { res } = await chat(node, 'tpm2', ask(TPM_PROMPT));
    t.is(res.status, 200, res.text.slice(0, 200));
  }
});

test.serial(
  `a budget of ${BUDGET} tokens, ${BUDGET_CALLS} concurrent calls through three nodes: never exceeded, ledger exact`,
  async (t) => {
    const f = fx();
    const tenant = parseTenantId(T.budget);
    const period = periodAt('month', Date.now()).id;
    const calls = await Promise.all(
      Array.from({ length: BUDGET_CALLS }, (_, i) =>
        chat(i % 3, 'budget', ask(`${BUDGET_PROMPT} ${i}`, { max_tokens: 30 })),
      ),
    );
    const served = calls.filter((c) => c.res.status === 200);
    const refused = calls.filter((c) => c.res.status === 429);
    t.is(served.length + refused.length, BUDGET_CALLS, calls.map((c) => c.res.status).join(' '));
    t.true(refused.length > 0, 'control: the calls asked for more than the budget');
    for (const c of refused) t.is(apiError(c.res).code, 'budget_exhausted');
    const upstreamUsage = served.reduce((a, c) => {
      const u = usageOf(c.res);
      return a + (u ? u.prompt_tokens + u.completion_tokens : NaN);
    }, 0);
    t.true(upstreamUsage > BUDGET / 3, 'more than one node’s third of the budget was served');

    await until(
      'every reservation settled',
      async () => (await f.redis.zCard(f.meter.budgetReservations(tenant, period))) === 0,
    );
    const budget = await f.redis.hGetAll(f.meter.budget(tenant, period));
    const used = Number(budget.used_tokens);
    t.true(used <= BUDGET, `spent ${used} of ${BUDGET}`);
    t.is(Number(budget.reserved_tokens ?? 0), 0);
    t.is(used, upstreamUsage, 'the budget holds what the upstream reported, to the token');
    // The ledger: one entry per served call, none twice, the same total.
    const entries = (await f.redis.xRange(f.meter.usageLedger(tenant, period), '-', '+')) ?? [];
    t.is(entries.length, served.length);
    t.is(new Set(entries.map((e) => e.message.rid)).size, entries.length, 'no entry twice');
    const ledger = entries.reduce(
      (a, e) => a + Number(e.message.prompt) + Number(e.message.completion),
      0,
    );
    t.is(ledger, upstreamUsage);
    t.log(
      `${served.length} served, ${refused.length} refused; spent ${used} of ${BUDGET} ` +
        `(${(upstreamUsage / served.length).toFixed(0)} tokens a call)`,
    );
  },
);

test.serial(
  'one cache: stored through node 0, a hit through nodes 1 and 2, never for another tenant',
  async (t) => {
    const f = fx();
    const upstream = f.door.upstream;
    const body = ask(`What is the capital of France? ${hex(4)}`, { temperature: 0 });
    const miss = await chat(0, 'cacheP', body);
    t.is(miss.res.status, 200, miss.res.text.slice(0, 300));
    t.is(miss.res.headers['x-cache-status'], 'MISS');
    // The log phase stores it (in the tenant's slot on the cluster).
    const entries = async (who: Who) => {
      let n = 0;
      for await (const keys of f.redis.scanIterator({
        MATCH: `${f.cache.namespace}:{t:${parseTenantId(T[who])}}:cache:e:*`,
        COUNT: 500,
      }))
        n += keys.length;
      return n;
    };
    await until('the entry stored', async () => (await entries('cacheP')) > 0);
    // Chat calls only: a miss of the semantic cache (plan pro) embeds the question upstream.
    const chats = () => upstream.received.filter((r) => r.path === '/v1/chat/completions').length;
    const before = chats();
    for (const node of [1, 2]) {
      const hit = await chat(node, 'cacheP', body);
      t.is(hit.res.status, 200);
      t.is(hit.res.headers['x-cache-status'], 'HIT', `node ${node}`);
      t.is(hit.res.text, miss.res.text, 'the answer stored through node 0');
    }
    t.is(chats(), before, 'the hits never reached the upstream');
    // Another tenant, same plan, same question, through a node that serves P's hit: its own
    // miss, answered by the upstream; then its own entry, one cache for it too.
    t.is(await entries('cacheQ'), 0);
    const other = await chat(2, 'cacheQ', body);
    t.is(other.res.status, 200);
    t.is(other.res.headers['x-cache-status'], 'MISS');
    const seen = upstream.received.find((r) => r.headers['x-test-id'] === other.testId);
    t.is(seen?.headers['x-tenant-id'], T.cacheQ, 'the other tenant’s question went upstream');
    await until('Q’s own entry stored', async () => (await entries('cacheQ')) > 0);
    const own = await chat(1, 'cacheQ', body);
    t.is(own.res.headers['x-cache-status'], 'HIT', 'Q’s own answer, through another node');
    t.is(chats(), before + 1, 'only Q’s miss went upstream');
  },
);

test.serial(
  'retrieval through any node: the tenant’s own knowledge, never another’s',
  async (t) => {
    const f = fx();
    const question = 'What is the launch codename in the project memo?';
    for (const node of [1, 2]) {
      const a = await chat(node, 'docA', ask(question));
      t.is(a.res.status, 200, a.res.text.slice(0, 300));
      const seenA = f.door.upstream.received.find((r) => r.headers['x-test-id'] === a.testId);
      t.true(
        seenA?.rawBody.toString('utf8').includes(f.codename),
        `control: A’s memo through node ${node}`,
      );
      const b = await chat(node, 'docB', ask(question));
      t.is(b.res.status, 200);
      const seenB = f.door.upstream.received.find((r) => r.headers['x-test-id'] === b.testId);
      const sent = seenB?.rawBody.toString('utf8') ?? '';
      t.true(sent.includes('launch party'), `B’s own handbook through node ${node}`);
      t.false(sent.includes(f.codename), 'nothing of A’s');
      t.false(b.res.text.includes(f.codename));
    }
  },
);

/** Starts a streamed call and resolves once its first chunk has arrived, with its request. */
function streamUntilFirstChunk(
  node: number,
): Promise<{ req: http.ClientRequest; closed: Promise<unknown> }> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    temperature: 1,
    max_tokens: DYING_MAX_TOKENS,
    messages: [{ role: 'user', content: 'tell me a long story' }],
  });
  return new Promise((resolve, reject) => {
    const req = http.request(`${nodeUrl(node)}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: {
        apikey: `${T.dying}-key`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    const closed = new Promise((done) => req.on('close', done));
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`the stream was answered ${res.statusCode}`));
        return;
      }
      res.once('data', () => resolve({ req, closed }));
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.end(body);
  });
}

test.serial(
  'a node dies holding a reservation: the others count it until its TTL, then it is billed once',
  async (t) => {
    const f = fx();
    const tenant = parseTenantId(T.dying);
    const period = periodAt('month', Date.now()).id;
    const reservations = f.meter.budgetReservations(tenant, period);
    // Node 2 (4 workers on Kong) reserves nearly the whole budget for a slow stream...
    const stream = await streamUntilFirstChunk(2);
    const held = await f.redis.zRangeWithScores(reservations, 0, -1);
    t.is(held.length, 1, 'the reservation is in the cluster while it streams');
    // ... and dies mid-stream: no log phase will settle or release it.
    await f.door.gateways[2]?.kill();
    const killedAt = Date.now();
    await stream.closed;
    t.true(
      (held[0]?.score ?? Infinity) <= killedAt + RESERVATION_TTL_S * 1000 + 2000,
      'it expires',
    );

    // The other nodes see it: the tenant's next call does not fit what is left.
    const refused = await chat(0, 'dying', ask('again', { max_tokens: DYING_MAX_TOKENS }));
    t.is(refused.res.status, 429, refused.res.text.slice(0, 200));
    t.is(apiError(refused.res).code, 'budget_exhausted');
    // Everyone else goes on, through both nodes left.
    for (const node of [0, 1]) {
      const other = await chat(node, 'other', ask(`meanwhile ${node}`));
      t.is(other.res.status, 200);
    }

    // At its TTL the reservation is no longer held but billed, once, as estimated (the upstream
    // had the call and the provider bills it: the prompt count and its bound), marked
    // settled_by expiry; the tenant's refused calls (and the plugin servers' timers) sweep it.
    const ledger = f.meter.usageLedger(tenant, period);
    const billed = async () =>
      ((await f.redis.xRange(ledger, '-', '+')) ?? [])
        .map((e) => e.message as Record<string, string>)
        .filter((m) => m.settled_by === 'expiry');
    while (Date.now() < killedAt + (RESERVATION_TTL_S + 20) * 1000) {
      const c = await chat(1, 'dying', ask('after the TTL', { max_tokens: DYING_MAX_TOKENS }));
      // Its budget is spent now, not given back: still refused.
      t.is(c.res.status, 429);
      if ((await billed()).length > 0) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    t.log(
      `billed ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (TTL ${RESERVATION_TTL_S} s)`,
    );
    await until('settled', async () => (await f.redis.zCard(reservations)) === 0);
    const entries = await billed();
    t.is(entries.length, 1, 'billed once');
    t.like(entries[0], { estimated: '1', completion: String(DYING_MAX_TOKENS), status: '0' });
    const budget = await f.redis.hGetAll(f.meter.budget(tenant, period));
    t.is(
      Number(budget.used_tokens),
      Number(entries[0]?.prompt) + Number(entries[0]?.completion),
      'the budget holds what was billed, and nothing else',
    );
    t.is(Number(budget.reserved_tokens ?? 0), 0);
  },
);
