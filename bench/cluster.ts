/**
 * Scale-out figures: three gateway nodes (the real Kong 3.9.3 with 1, 2 and 4 nginx workers
 * when installed, else three harness gateways) running kong.yml's chain, every Redis-backed
 * plugin on one real 3-master Redis Cluster (scripts/services/redis-cluster.sh):
 *   1. the fair queue's shares across three nodes: an upstream of 2 seats, three tenants of
 *      one plan each with a backlog through its own node; Jain's index over the grants made
 *      while all three were backlogged; then weighted, a free (1) and a pro (4) tenant;
 *   2. requests and tokens per minute enforced for the three nodes together: two tenants
 *      offered about 10× their limits through all three nodes for a fixed window; admitted
 *      against what one cluster-wide bucket allows (burst + rate × window);
 *   3. recovery after a node dies holding a tenant lease, an upstream seat and a budget
 *      reservation: the time until each comes back (by its TTL), and the other tenants'
 *      requests meanwhile.
 * Run: `npm run bench -- cluster` (or `npx tsx bench/cluster.ts` after a build, with Redis,
 * Milvus and the cluster up). About two minutes.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { locateKong } from '../kong-runner/index';
import { closeAllRedis, type RedisClusterClient } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { parseTenantId } from '../lib/tenant/tenant-id';
import { periodAt } from '../plugins/token-meter/period';
import { Closers, send, type Sent } from '../test/helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../test/helpers/kong-yml-door';
import { startExtraUpstream } from '../test/helpers/upstreams';
import { connectCluster, sharedClusterUrl } from '../test/integration/redis-cluster-service';
import { connectMilvus } from '../test/integration/services';
import type { MockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const WORKERS = [1, 2, 4] as const;
const SEATS = 2;
const SEAT_TTL_S = 4;
const MAX_WAIT_MS = 8000;
const RESERVATION_TTL_S = 10;
const RPM = { rate: 120, burst: 10 };
const TPM = { rate: 30_000, burst: 3000 };
const WINDOW_MS = 15_000;
/** Each load loop's pause between sends: 3 loops per tenant, about 20 offered a second. */
const PACE_MS = 150;
const BACKLOG = 20;
/**
 * The fair queue shares tokens: a call's width is its token estimate (prompt + max_tokens).
 * Plan pro's persona makes its prompts ~15 tokens longer than plan free's; with max_tokens this
 * large the widths differ by under 2 %, so shares in calls are shares in tokens.
 */
const FAIR_MAX_TOKENS = 1000;

const run = randomBytes(3).toString('hex');
const T = {
  blocker: `bc-block-${run}`,
  fair: [`bc-f1-${run}`, `bc-f2-${run}`, `bc-f3-${run}`],
  /** Plan free (weight 1) and plan pro (weight 4), for the weighted shares. */
  light: `bc-free-${run}`,
  heavy: `bc-pro-${run}`,
  rpm: `bc-rpm-${run}`,
  tpm: `bc-tpm-${run}`,
  lease: `bc-lease-${run}`,
  reserve: `bc-res-${run}`,
  other: `bc-o-${run}`,
};

const SEMANTIC_COLLECTION = `kta_bench_cluster_${run}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function chat(door: KongYmlDoor, node: number, tenant: string, body: object): Promise<Sent> {
  const g = door.gateways[node];
  if (!g) throw new Error(`no node ${node}`);
  return send(`${g.url}/v1/chat/completions`, {
    headers: [['apikey', `${tenant}-key`]],
    body: { model: 'gpt-4o-mini', temperature: 1, max_tokens: 8, ...body },
  });
}
const msg = (content: string) => ({ messages: [{ role: 'user', content }] });

function jain(shares: readonly number[]): number {
  const sum = shares.reduce((a, b) => a + b, 0);
  const squares = shares.reduce((a, b) => a + b * b, 0);
  return (sum * sum) / (shares.length * squares);
}

interface Backlog {
  readonly tenant: string;
  readonly node: number;
  /** Its plan's fair-queuing weight (kong.yml: free 1, pro 4). */
  readonly weight: number;
  readonly calls: number;
}

/**
 * Another tenant holds both seats while the backlogs queue (so the shares measure the
 * scheduler, not which node's calls reached the queue first); then the grants among the first
 * `window` served, while every backlog still had calls waiting. Jain's index is over the shares
 * divided by the weights (1 when each got its weight's share).
 */
async function fairShares(
  door: KongYmlDoor,
  backlogs: readonly Backlog[],
  window: number,
): Promise<{ shares: number[]; jain: number; maxInFlight: number }> {
  const up = door.upstream;
  up.reset();
  up.configure({ latencyMs: 2000 });
  const blockers = [0, 1].map((node) => chat(door, node, T.blocker, msg('hold the seats')));
  while (up.stats().inFlight < SEATS) await sleep(20);
  up.configure({ latencyMs: 60 });
  const calls = await Promise.all(
    backlogs.flatMap((b) =>
      Array.from({ length: b.calls }, (_, i) =>
        chat(door, b.node, b.tenant, { ...msg(`backlog ${i}`), max_tokens: FAIR_MAX_TOKENS }),
      ),
    ),
  );
  await Promise.all(blockers);
  up.configure({ latencyMs: 0 });
  const bad = calls.filter((c) => c.status !== 200);
  if (bad.length > 0) throw new Error(`fair queue: ${bad.length} not served: ${bad[0]?.text}`);
  const served = up.received
    .filter((r) => r.path === '/v1/chat/completions')
    .map((r) => r.headers['x-tenant-id'])
    .filter((id) => id !== T.blocker)
    .slice(0, window);
  const shares = backlogs.map((b) => served.filter((id) => id === b.tenant).length);
  return {
    shares,
    jain: jain(shares.map((n, i) => n / (backlogs[i]?.weight ?? 1))),
    maxInFlight: up.stats().maxInFlight,
  };
}

interface Enforced {
  offered: number;
  admitted: number;
  admittedTokens: number;
  windowS: number;
}

/** Three paced loops per tenant, one per node, for WINDOW_MS. */
async function offer(door: KongYmlDoor, tenant: string, content: string): Promise<Enforced> {
  const t0 = Date.now();
  let offered = 0;
  let admitted = 0;
  let admittedTokens = 0;
  await Promise.all(
    [0, 1, 2].map(async (node) => {
      while (Date.now() - t0 < WINDOW_MS) {
        offered++;
        const r = await chat(door, node, tenant, msg(content));
        if (r.status === 200) {
          admitted++;
          const u = (r.json as { usage?: { prompt_tokens: number; completion_tokens: number } })
            .usage;
          admittedTokens += u ? u.prompt_tokens + u.completion_tokens : 0;
        } else if (r.status !== 429) {
          throw new Error(`${tenant}: ${r.status} ${r.text.slice(0, 200)}`);
        }
        await sleep(PACE_MS);
      }
    }),
  );
  return { offered, admitted, admittedTokens, windowS: (Date.now() - t0) / 1000 };
}

/** Starts a slow stream and resolves at its first chunk (the node then holds its state). */
function holdStream(door: KongYmlDoor, node: number, tenant: string): Promise<void> {
  const g = door.gateways[node];
  if (!g) throw new Error(`no node ${node}`);
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    temperature: 1,
    max_tokens: 200,
    messages: [{ role: 'user', content: 'a long story please' }],
  });
  return new Promise((resolve, reject) => {
    const req = http.request(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: {
        apikey: `${tenant}-key`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) reject(new Error(`${tenant}: stream answered ${res.statusCode}`));
      res.once('data', () => resolve());
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    req.end(body);
  });
}

interface Recovery {
  leaseS: number;
  leaseCode: string;
  reservationS: number;
  reservationCode: string;
  seatS: number;
  others: { n: number; ok: number; p50: number; p99: number };
  othersBefore: { p50: number; p99: number };
}

async function recovery(door: KongYmlDoor, redis: RedisClusterClient): Promise<Recovery> {
  const rl = createKeyspace(`${door.namespace}rl`);
  const seats = rl.fairQueue('llm').seats;
  const timeOthers = async (n: number) => {
    const ms: number[] = [];
    let ok = 0;
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const r = await chat(door, i % 2, T.other, msg(`bystander ${i}`));
      ms.push(performance.now() - t0);
      if (r.status === 200) ok++;
    }
    ms.sort((a, b) => a - b);
    return { n, ok, p50: percentile(ms, 50), p99: percentile(ms, 99) };
  };
  const before = await timeOthers(40);
  await Promise.all([holdStream(door, 2, T.lease), holdStream(door, 2, T.reserve)]);
  const heldSeats = await redis.zCard(seats);
  if (heldSeats !== 2) throw new Error(`expected the two streams' seats, found ${heldSeats}`);
  await door.gateways[2]?.kill();
  const killed = performance.now();
  const others = timeOthers(60);
  const backAfter = async (tenant: string): Promise<{ s: number; code: string }> => {
    let code = '';
    for (;;) {
      const r = await chat(door, 0, tenant, { ...msg('am I back'), max_tokens: 200 });
      if (r.status === 200) return { s: (performance.now() - killed) / 1000, code };
      code ||= (r.json as { error?: { code?: string } }).error?.code ?? String(r.status);
      if (performance.now() - killed > 60_000) throw new Error(`${tenant} never came back`);
      await sleep(250);
    }
  };
  const seatBack = (async () => {
    while ((await redis.zCard(seats)) > 0) await sleep(100);
    return (performance.now() - killed) / 1000;
  })();
  const [lease, reservation, seatS, o] = await Promise.all([
    backAfter(T.lease),
    backAfter(T.reserve),
    seatBack,
    others,
  ]);
  return {
    leaseS: lease.s,
    leaseCode: lease.code,
    reservationS: reservation.s,
    reservationCode: reservation.code,
    seatS,
    others: o,
    othersBefore: { p50: before.p50, p99: before.p99 },
  };
}

async function main(): Promise<void> {
  process.env.GATEWAY ??= locateKong() ? 'kong' : 'harness';
  const kind = process.env.GATEWAY;
  const closers = new Closers();
  try {
    const clusterUrl = await sharedClusterUrl();
    const redis = await connectCluster(clusterUrl, 3000);
    closers.add(closeAllRedis);
    const milvus = await connectMilvus();
    closers.add(async () => {
      await milvus.dropCollection({ collection_name: SEMANTIC_COLLECTION }).catch(() => undefined);
      milvus.closeConnection();
    });
    const slow = await startExtraUpstream(closers.add, { streamChunkDelayMs: 200 });
    const door = await startKongYmlDoor(
      closers.add,
      (p) => adjust(p as { name: string; config?: Record<string, unknown> }, slow),
      [T.blocker, ...T.fair, T.light, T.heavy, T.rpm, T.tpm, T.lease, T.reserve, T.other].map(
        (id) => ({
          username: `${id}-app`,
          custom_id: id,
          tags: [id === T.light ? 'plan:free' : 'plan:pro'],
          keyauth_credentials: [{ key: `${id}-key` }],
        }),
      ),
      // Retrieval searches Milvus on every request; what is measured here is Redis's.
      ['retrieval-injector'],
      { redisUrl: clusterUrl, workers: WORKERS },
      WORKERS.length,
    );
    for (let i = 0; i < 9; i++) await chat(door, i % 3, T.other, msg('warm up'));

    const fair = await fairShares(
      door,
      T.fair.map((tenant, node) => ({ tenant, node, weight: 4, calls: BACKLOG })),
      (T.fair.length * BACKLOG * 3) / 4,
    );
    process.stdout.write(`fair: ${fair.shares.join(' / ')} Jain ${fair.jain.toFixed(4)}\n`);
    // Weighted: the free tenant's 15 through node 0, the pro tenant's 40 through node 2; in the
    // first 40 grants both still have calls waiting (at 1:4, 8 and 32).
    const weighted = await fairShares(
      door,
      [
        { tenant: T.light, node: 0, weight: 1, calls: 15 },
        { tenant: T.heavy, node: 2, weight: 4, calls: 40 },
      ],
      40,
    );
    process.stdout.write(
      `weighted: ${weighted.shares.join(' / ')} Jain ${weighted.jain.toFixed(4)}\n`,
    );
    const [rpm, tpm] = await Promise.all([
      offer(door, T.rpm, 'a short question'),
      offer(door, T.tpm, 'lorem '.repeat(900)),
    ]);
    process.stdout.write(`rpm ${JSON.stringify(rpm)}\ntpm ${JSON.stringify(tpm)}\n`);
    const rec = await recovery(door, redis);
    process.stdout.write(`recovery ${JSON.stringify(rec)}\n`);
    const reservationKey = createKeyspace(`${door.namespace}tm`).budgetReservations(
      parseTenantId(T.reserve),
      periodAt('month', Date.now()).id,
    );
    // The tenant's own call after recovery settles from its log phase: give it a moment.
    let leftover = await redis.zCard(reservationKey);
    for (let i = 0; i < 50 && leftover > 0; i++) {
      await sleep(100);
      leftover = await redis.zCard(reservationKey);
    }

    const rpmAllowed = RPM.burst + (RPM.rate / 60) * rpm.windowS;
    const tpmAllowed = TPM.burst + (TPM.rate / 60) * tpm.windowS;
    const nodes =
      kind === 'kong'
        ? `Three real Kong 3.9.3 (${WORKERS.join(', ')} nginx workers)`
        : 'Three harness gateways';
    const others = rec.others;
    const body = [
      '## Scale-out: three nodes on a Redis Cluster',
      `Command: \`npm run bench -- cluster\` (bench/cluster.ts). ${nodes}, each with its own ` +
        "plugin server, running kong.yml's chain (retrieval-injector left out: it searches " +
        'Milvus on every request, and these figures are about the state the nodes share in ' +
        'Redis) with every Redis-backed plugin on one real 3-master Redis Cluster ' +
        '(scripts/services/redis-cluster.sh, one replica each), and the mock upstream. ' +
        'Tenants of plan pro, with the per-tenant limits below.',
      `**Fair queue across nodes.** Upstream capacity ${SEATS} seats for all nodes; another ` +
        `tenant holds both while three tenants' backlogs of ${BACKLOG} queue, each through its ` +
        'own node (60 ms a call). Grants among the first three quarters (all three still ' +
        'backlogged):',
      table(
        ['tenant (node)', 'grants'],
        fair.shares.map((s, i) => [`${i + 1} (node ${i}, ${WORKERS[i]} worker${i ? 's' : ''})`, s]),
      ),
      `Jain's index **${fair.jain.toFixed(4)}**; at most ${fair.maxInFlight} calls at the ` +
        `upstream at once (capacity ${SEATS}).`,
      'Weighted, the same way: a tenant of plan free (weight 1) with 15 calls through node 0 ' +
        'and one of plan pro (weight 4) with 40 through node 2; grants among the first 40 ' +
        `(both still backlogged). The queue shares tokens (a call's width is its estimate): every ` +
        `call here asks max_tokens ${FAIR_MAX_TOKENS}, so the pro persona's extra prompt tokens ` +
        'change widths by under 2 % (in a run with max_tokens 8 the grants in calls were ' +
        '13 / 27: fair in tokens, not in calls):',
      table(
        ['tenant (node)', 'weight', 'grants', 'grants ÷ weight'],
        [
          ['free (node 0)', 1, weighted.shares[0] ?? 0, (weighted.shares[0] ?? 0).toFixed(1)],
          ['pro (node 2)', 4, weighted.shares[1] ?? 0, ((weighted.shares[1] ?? 0) / 4).toFixed(1)],
        ],
      ),
      `Jain's index over grants ÷ weight **${weighted.jain.toFixed(4)}**; at most ` +
        `${weighted.maxInFlight} calls at the upstream at once.`,
      '**Limits enforced for the three nodes together.** Each tenant offered through all ' +
        `three nodes (three loops, one call every ${PACE_MS} ms each) for ${WINDOW_MS / 1000} s; ` +
        'allowed = burst + rate × window, what one cluster-wide bucket admits (a bucket per ' +
        'node would admit three times that):',
      table(
        ['limit', 'offered', 'admitted', 'allowed (one bucket)', 'admitted ÷ allowed'],
        [
          [
            `requests: ${RPM.rate}/min, burst ${RPM.burst}`,
            `${rpm.offered} calls`,
            `${rpm.admitted} calls`,
            rpmAllowed.toFixed(1),
            (rpm.admitted / rpmAllowed).toFixed(2),
          ],
          [
            `tokens: ${TPM.rate}/min, burst ${TPM.burst}`,
            `${tpm.offered} calls`,
            `${tpm.admittedTokens} tokens (${tpm.admitted} calls)`,
            tpmAllowed.toFixed(0),
            (tpm.admittedTokens / tpmAllowed).toFixed(2),
          ],
        ],
      ),
      '**A node killed** (node 2: SIGKILL of its master, workers and plugin server) while two ' +
        'slow streams through it hold a tenant lease (`max_concurrent: 1`), both upstream ' +
        'seats and a budget reservation (a budget that fits one call). Time from the kill ' +
        'until each is back, measured through node 0 (a call every 250 ms; seats read in ' +
        'Redis); each TTL runs from when its holder was taken, shortly before the kill:',
      table(
        ['held by the dead node', 'TTL', 'refused meanwhile', 'back after'],
        [
          [
            'tenant lease (concurrency)',
            `${(MAX_WAIT_MS / 1000 + SEAT_TTL_S).toFixed(0)} s (max_wait + seat TTL)`,
            `\`${rec.leaseCode || '—'}\``,
            `${rec.leaseS.toFixed(1)} s`,
          ],
          ['upstream seats (fair queue)', `${SEAT_TTL_S} s`, '—', `${rec.seatS.toFixed(1)} s`],
          [
            'budget reservation (token-meter)',
            `${RESERVATION_TTL_S} s`,
            `\`${rec.reservationCode || '—'}\``,
            `${rec.reservationS.toFixed(1)} s`,
          ],
        ],
      ),
      `Other tenants meanwhile, through nodes 0 and 1: ${others.ok} of ${others.n} served, ` +
        `p50 ${others.p50.toFixed(0)} ms, p99 ${others.p99.toFixed(0)} ms (before the kill: ` +
        `p50 ${rec.othersBefore.p50.toFixed(0)} ms, p99 ${rec.othersBefore.p99.toFixed(0)} ms). ` +
        'The p99 is the first calls after the kill waiting in the fair queue: the dead node ' +
        'held both seats, and the capacity it held is lost until their TTL (so size ' +
        "`queue.seat_ttl_seconds` just above the upstream's read timeout). Reservations of the " +
        `dead call left after recovery: ${leftover}. A Redis master killed and replaced by its ` +
        'replica, and slots moved: test/integration/redis-cluster-faults.test.ts.',
    ].join('\n\n');
    writeSection('cluster', body);
    process.stdout.write(`${body}\n`);
    if (fair.jain < 0.99) throw new Error(`Jain ${fair.jain}`);
    if (weighted.jain < 0.99) throw new Error(`weighted Jain ${weighted.jain}`);
    if (rpm.admitted > rpmAllowed + 1) throw new Error('requests over the cluster-wide limit');
    if (tpm.admittedTokens > tpmAllowed * 1.05)
      throw new Error('tokens over the cluster-wide limit');
  } finally {
    await closers.closeAll();
  }
}

function adjust(p: { name: string; config?: Record<string, unknown> }, slow: MockUpstream): void {
  const c = p.config;
  if (!c) return;
  const tenants = (c.tenants ?? {}) as Record<string, unknown>;
  if (p.name === 'tenant-ratelimit') {
    c.queue = {
      ...(c.queue as object),
      max_concurrent: SEATS,
      max_wait_ms: MAX_WAIT_MS,
      seat_ttl_seconds: SEAT_TTL_S,
    };
    const roomy = {
      max_concurrent: 256,
      requests_per_minute: 60_000,
      request_burst: 1000,
      tokens_per_minute: 1_000_000,
    };
    c.tenants = {
      ...tenants,
      ...Object.fromEntries(
        [T.blocker, ...T.fair, T.light, T.heavy, T.other].map((id) => [id, roomy]),
      ),
      [T.rpm]: { requests_per_minute: RPM.rate, request_burst: RPM.burst, max_concurrent: 256 },
      [T.tpm]: {
        tokens_per_minute: TPM.rate,
        token_burst: TPM.burst,
        requests_per_minute: 60_000,
        request_burst: 1000,
        max_concurrent: 256,
      },
      [T.lease]: { max_concurrent: 1 },
    };
  }
  if (p.name === 'token-meter') {
    // Room for one call of max_tokens 200 and its prompt (about 30), not even a clamped second.
    c.tenants = { ...tenants, [T.reserve]: { budget_tokens: 240 } };
    c.reservation_ttl_seconds = RESERVATION_TTL_S;
  }
  if (p.name === 'tenant-cache') {
    const sem = c.semantic as Record<string, Record<string, unknown>>;
    // Temperature 1 everywhere: nothing is cached. The run's own collection all the same.
    c.semantic = { ...sem, milvus: { ...sem.milvus, collection: SEMANTIC_COLLECTION } };
  }
  if (p.name === 'circuit-breaker') {
    const ups = c.upstreams as Record<string, unknown>;
    ups.slow = { host: '127.0.0.1', port: slow.port, breaker_scope: 'tenant' };
    c.tenants = { ...tenants, [T.lease]: { upstream: 'slow' }, [T.reserve]: { upstream: 'slow' } };
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
