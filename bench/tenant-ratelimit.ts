/**
 * tenant-ratelimit against the noisy neighbour, in one run, against the mock upstream with a
 * fixed capacity and service time:
 *
 * 1. Noisy neighbour. Victims B and C send sequential traffic well below their share; tenant
 *    A floods with closed-loop workers (20x the upstream's seats by default). Victim p99
 *    under the flood / victim p99 alone, and the upstream's utilisation during the flood,
 *    for plain FIFO (tenant-auth only: the upstream's own queue) and for tenant-ratelimit's
 *    weighted fair queue (queue.max_concurrent = the upstream's capacity).
 * 2. Weighted shares: three tenants with plan weights 1:2:4, all backlogged; achieved
 *    throughput shares against the weights, and Jain's index over weight-normalised shares.
 * 3. The unqueued path: Redis round trips per request (INFO commandstats) and the plugin's
 *    PDK calls per phase (harness counts).
 *
 * Run: `npm run bench` (or `npx tsx bench/tenant-ratelimit.ts` after `npm run build`).
 * BENCH_GATEWAY=kong runs it on the real Kong 3.9.3 (kong-runner), default the harness.
 * Knobs: BENCH_SECONDS (flood window, default 15), BENCH_FLOOD_FACTOR (default 20),
 * BENCH_SERVICE_MS (the upstream's time per request, default 100).
 * Loops are bounded in time and only reach 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { createClient } from 'redis';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { startKong } from '../kong-runner/index';
import { startMockUpstream, type MockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const GATEWAY = process.env.BENCH_GATEWAY === 'kong' ? 'kong' : 'harness';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const FLOOD_FACTOR = Number(process.env.BENCH_FLOOD_FACTOR ?? 20);
/** Upstream: 4 seats x 100 ms (BENCH_SERVICE_MS) = 40 requests per second. */
const SEATS = 4;
const SERVICE_MS = Number(process.env.BENCH_SERVICE_MS ?? 100);
const VICTIM_THINK_MS = 100;

const PLANS = {
  w1: { tools_allowed: ['*'], weight: 1 },
  w2: { tools_allowed: ['*'], weight: 2 },
  w4: { tools_allowed: ['*'], weight: 4 },
};
const TENANTS: Array<[string, string]> = [
  ['flood', 'w1'],
  ['victim-b', 'w1'],
  ['victim-c', 'w1'],
  ['share-1', 'w1'],
  ['share-2', 'w2'],
  ['share-4', 'w4'],
];
const CHAT = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hello there' }],
  max_tokens: 16,
});

interface Sample {
  ms: number;
  status: number;
  at: number;
  id: string;
}

function request(agent: http.Agent, url: string, key: string): Promise<Sample> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          apikey: key,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(CHAT),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            ms: Number(process.hrtime.bigint() - t0) / 1e6,
            status: res.statusCode ?? 0,
            at: Date.now(),
            id: String(res.headers['x-kong-request-id'] ?? ''),
          }),
        );
      },
    );
    req.on('error', () =>
      resolve({
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
        status: 0,
        at: Date.now(),
        id: '',
      }),
    );
    req.end(CHAT);
  });
}

/** `workers` closed-loop clients of one tenant until `until`; think time between requests. */
async function load(
  url: string,
  key: string,
  workers: number,
  until: number,
  thinkMs = 0,
): Promise<Sample[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const out: Sample[] = [];
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < until) {
        out.push(await request(agent, url, key));
        if (thinkMs > 0) await new Promise((r) => setTimeout(r, thinkMs));
      }
    }),
  );
  agent.destroy();
  return out;
}

/** Mean seats busy / capacity, sampled every 10 ms while `during` runs. */
async function utilisation<T>(upstream: MockUpstream, during: Promise<T>): Promise<[T, number]> {
  let sum = 0;
  let n = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      sum += upstream.stats().inFlight;
      n++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const result = await during;
  done = true;
  await sampler;
  return [result, n ? sum / n / SEATS : 0];
}

const p99 = (s: Sample[]) =>
  percentile(
    s
      .filter((x) => x.status === 200)
      .map((x) => x.ms)
      .sort((a, b) => a - b),
    99,
  );
const ok = (s: Sample[]) => s.filter((x) => x.status === 200).length;

async function main(): Promise<void> {
  const upstream = await startMockUpstream({ latencyMs: SERVICE_MS, capacity: SEATS });
  const run = randomBytes(4).toString('hex');
  const ratelimit = (route: string, extra: Record<string, unknown> = {}) => ({
    name: 'tenant-ratelimit',
    route,
    config: {
      redis: { url: REDIS_URL, key_namespace: `bench-${run}-${route}`, command_timeout_ms: 1000 },
      queue: { upstream: `bench-${route}`, max_concurrent: SEATS, max_wait_ms: 20000 },
      ...extra,
    },
  });
  const routes = ['fifo', 'wfq', 'wfqpipe', 'shares'];
  const config = {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstream.url,
        routes: routes.map((r) => ({ name: r, paths: [`/${r}`], strip_path: true })),
      },
    ],
    plugins: [
      ...routes.flatMap((r) => [
        { name: 'key-auth', route: r },
        { name: 'tenant-auth', route: r, config: { plans: PLANS, validate_json_body: false } },
      ]),
      ratelimit('wfq'),
      // One request more than the upstream's seats: the next one is already at the upstream
      // when a seat frees, hiding the gateway's handoff time.
      ratelimit('wfqpipe', {
        queue: { upstream: 'bench-wfqpipe', max_concurrent: SEATS + 1, max_wait_ms: 20000 },
      }),
      ratelimit('shares'),
    ],
    consumers: TENANTS.map(([id, plan]) => ({
      username: id,
      custom_id: id,
      tags: [`plan:${plan}`],
      keyauth_credentials: [{ key: `${id}-key` }],
    })),
  };
  const opts = {
    config,
    pluginServers: Object.fromEntries(
      ['tenant-auth', 'tenant-ratelimit'].map((n) => [
        n,
        path.join(ROOT, 'dist', 'pluginservers', n),
      ]),
    ),
  };
  const gateway: Gateway =
    GATEWAY === 'kong'
      ? await startKong({ ...opts, workers: 2, label: 'bench-ratelimit' })
      : await startGateway(opts);
  const url = (route: string) => `${gateway.url}/${route}/v1/chat/completions`;
  const redis = createClient({ url: REDIS_URL });
  await redis.connect();

  try {
    // Warm-up: JIT, sockets, scripts loaded in Redis.
    for (const r of routes) await load(url(r), 'victim-b-key', 2, Date.now() + 1500);

    // --- 3. The unqueued path: Redis round trips and PDK calls.
    const evalCalls = async () => {
      const info = await redis.info('commandstats');
      let calls = 0;
      for (const m of info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)) calls += Number(m[1]);
      return calls;
    };
    const before = await evalCalls();
    const seq = await load(url('wfq'), 'victim-c-key', 1, Date.now() + 3000);
    await new Promise((r) => setTimeout(r, 300)); // last log phases
    const scriptsPerRequest = ((await evalCalls()) - before) / seq.length;
    const pdk = new Map<string, number>();
    if (GATEWAY === 'harness') {
      for (const s of seq) {
        const st = gateway.requestStats(s.id)?.plugins['tenant-ratelimit'];
        for (const phase of ['access', 'log'] as const) {
          const calls = st?.[phase]?.pdkCalls;
          if (!calls) continue;
          const n = Object.values(calls).reduce((a, b) => a + b, 0);
          pdk.set(`${phase}: ${n}`, (pdk.get(`${phase}: ${n}`) ?? 0) + 1);
        }
      }
    }

    // --- 1. Noisy neighbour.
    const victimsAlone = async (route: string) => {
      const until = Date.now() + SECONDS * 1000 * 0.6;
      const [b, c] = await Promise.all([
        load(url(route), 'victim-b-key', 1, until, VICTIM_THINK_MS),
        load(url(route), 'victim-c-key', 1, until, VICTIM_THINK_MS),
      ]);
      return [...b, ...c];
    };
    const flood = async (route: string) => {
      const until = Date.now() + SECONDS * 1000;
      const floodP = load(url(route), 'flood-key', SEATS * FLOOD_FACTOR, until);
      // Victims start once the flood has filled the queue.
      await new Promise((r) => setTimeout(r, 1500));
      const [[b, c], util] = await utilisation(
        upstream,
        Promise.all([
          load(url(route), 'victim-b-key', 1, until, VICTIM_THINK_MS),
          load(url(route), 'victim-c-key', 1, until, VICTIM_THINK_MS),
        ]),
      );
      const a = await floodP;
      return { victims: [...b, ...c], flood: a, util };
    };
    const rows: Array<Array<string | number>> = [];
    const summary: string[] = [];
    for (const [name, route] of [
      ['plain FIFO (tenant-auth only; the upstream queues)', 'fifo'],
      [`tenant-ratelimit fair queue, max_concurrent ${SEATS} (= the upstream's seats)`, 'wfq'],
      [`tenant-ratelimit fair queue, max_concurrent ${SEATS + 1} (one in the pipe)`, 'wfqpipe'],
    ] as const) {
      const alone = await victimsAlone(route);
      await new Promise((r) => setTimeout(r, 500));
      const f = await flood(route);
      await new Promise((r) => setTimeout(r, 2500)); // drain
      const ratio = p99(f.victims) / p99(alone);
      rows.push([
        name,
        p99(alone).toFixed(0),
        p99(f.victims).toFixed(0),
        `**${ratio.toFixed(2)}×**`,
        `${(f.util * 100).toFixed(1)} %`,
        `${ok(f.victims)}/${f.victims.length}`,
        `${ok(f.flood)}/${f.flood.length}`,
      ]);
      summary.push(
        `${route}: victim p99 ${ratio.toFixed(2)}x alone, utilisation ${(f.util * 100).toFixed(1)} %`,
      );
    }

    // --- 2. Weighted shares, all backlogged.
    const sharesUntil = Date.now() + SECONDS * 1000;
    const measureFrom = Date.now() + 2000;
    const shareRuns = await Promise.all(
      (['share-1', 'share-2', 'share-4'] as const).map((t) =>
        load(url('shares'), `${t}-key`, SEATS * 4, sharesUntil),
      ),
    );
    // Only completions inside the window: after it, every tenant's backlog drains and would
    // add the same count to each, flattening the shares.
    const done = shareRuns.map(
      (s) => s.filter((x) => x.status === 200 && x.at >= measureFrom && x.at <= sharesUntil).length,
    );
    const total = done.reduce((a, b) => a + b, 0);
    const weights = [1, 2, 4];
    const wsum = 7;
    const normalised = done.map((d, i) => d / total / ((weights[i] ?? 1) / wsum));
    const jain =
      normalised.reduce((a, b) => a + b, 0) ** 2 /
      (normalised.length * normalised.reduce((a, b) => a + b * b, 0));
    const shareRows = done.map((d, i) => [
      `share-${weights[i]}`,
      weights[i] ?? 0,
      `${(((weights[i] ?? 0) / wsum) * 100).toFixed(1)} %`,
      d,
      `${((d / total) * 100).toFixed(1)} %`,
      `${((d / total / ((weights[i] ?? 1) / wsum) - 1) * 100).toFixed(1)} %`,
    ]);
    summary.push(`shares ${done.join(':')}, Jain ${jain.toFixed(4)}`);

    const body = `## tenant-ratelimit: noisy neighbour and weighted shares

Command: \`npm run bench\` (bench/tenant-ratelimit.ts; \`BENCH_GATEWAY=${GATEWAY} BENCH_SECONDS=${SECONDS} BENCH_SERVICE_MS=${SERVICE_MS}\`), gateway: ${
      GATEWAY === 'kong' ? 'the real Kong 3.9.3 (2 workers)' : 'the harness'
    }, real Redis. Mock upstream: ${SEATS} seats × ${SERVICE_MS} ms
(${(SEATS * 1000) / SERVICE_MS} requests/s), over capacity it queues FIFO. Tenant A floods with
${SEATS * FLOOD_FACTOR} closed-loop workers (${FLOOD_FACTOR}× the seats) for ${SECONDS} s; victims B and C
each send one request at a time with ${VICTIM_THINK_MS} ms between them (well below their share).
"alone" is the victims' p99 with no flood, measured just before, on the same route. Utilisation is
the mean number of busy upstream seats / ${SEATS}, sampled every 10 ms while the victims run.
tenant-ratelimit's queue declares the upstream's capacity (\`queue.max_concurrent: ${SEATS}\`, or
one more, so that the next request is already at the upstream when a seat frees); all tenants
weight 1; no per-tenant limits are set, so nothing here is a 429.

${table(['setup', 'victim p99 alone ms', 'victim p99 under flood ms', 'under flood ÷ alone', 'upstream utilisation', 'victim 200s', 'flood 200s'], rows)}

### Weighted shares

Three tenants on plans of weight 1, 2 and 4, each with ${SEATS * 4} closed-loop workers on the same
fair queue (${SEATS} seats) for ${SECONDS} s; completions counted after the first 2 s.
Jain's fairness index over the weight-normalised shares: **${jain.toFixed(4)}** (1 = exactly
proportional to the weights).

${table(['tenant', 'weight', 'target share', 'completed', 'achieved share', 'off target'], shareRows)}

### The unqueued path

One tenant, sequential requests, seats free: **${scriptsPerRequest.toFixed(2)} Redis scripts per
request** (INFO commandstats, EVALSHA + EVAL): tenant-admit + fair-queue acquire in access,
tenant-settle + fair-queue release in log (the two log calls are sent together).${
      pdk.size
        ? ` PDK calls of tenant-ratelimit (harness counts): ${[...pdk.entries()]
            .map(([k, n]) => `${k} (${n} requests)`)
            .join('; ')}.`
        : ''
    }`;
    writeSection(
      `tenant-ratelimit-${GATEWAY}${SERVICE_MS === 100 ? '' : `-${SERVICE_MS}ms`}`,
      body,
    );
    process.stdout.write(`${body}\n\n${summary.join('\n')}\n`);
  } finally {
    await redis.close();
    await gateway.close();
    await upstream.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
