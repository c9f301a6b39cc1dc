/**
 * tenant-ratelimit against the noisy neighbour, in one run, against the mock upstream with a
 * fixed capacity and service time:
 *
 * 1. Noisy neighbour. Victims B and C send sequential traffic well below their share; tenant
 *    A floods with closed-loop workers (20x the upstream's seats by default). Victim p99
 *    under the flood / victim p99 alone, and the upstream's utilisation during the flood,
 *    for plain FIFO (tenant-auth only: the upstream's own queue), for Kong's bundled
 *    `rate-limiting` with a static per-consumer limit (redis policy; what platform teams use
 *    today; real Kong only, the harness has no such plugin) and for tenant-ratelimit's
 *    weighted fair queue (queue.max_concurrent = the upstream's capacity). The victims'
 *    latency over time is drawn as an SVG chart (docs/noisy-neighbour-<gateway>.svg).
 * 2. Weighted shares: three tenants with plan weights 1:2:4, all backlogged; achieved
 *    throughput shares against the weights, and Jain's index over weight-normalised shares,
 *    on one gateway node and on two nodes sharing the one Redis (half the workers on each).
 * 3. The unqueued path: Redis round trips per request by phase (the plugin's own
 *    tenant_ratelimit_redis_round_trips_total, scraped from its metrics port, so other clients
 *    of a shared Redis do not count) and the plugin's PDK calls per phase (harness counts).
 *
 * Run: `npm run bench` (or `npx tsx bench/tenant-ratelimit.ts` after `npm run build`).
 * On the real Kong 3.9.3 (kong-runner) when one is installed, else the harness;
 * BENCH_GATEWAY=kong|harness chooses. Knobs: BENCH_SECONDS (flood window, default 10),
 * BENCH_FLOOD_FACTOR (default 20), BENCH_SERVICE_MS (the upstream's time per request,
 * default 100), BENCH_RL_LIMITS (rate-limiting's per-consumer limits per second, default
 * "20,35"), BENCH_REJECT_PAUSE_MS (a flood worker's pause after a 429, default 0: the
 * flood is closed-loop whatever it gets back).
 * Loops are bounded in time and only reach 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { createClient } from 'redis';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { locateKong, startKong } from '../kong-runner/index';
import type { MockStats } from '../mock-upstream/index';
import { latencyChart, type Series } from './lib/svg-chart';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const GATEWAY: 'kong' | 'harness' =
  process.env.BENCH_GATEWAY === 'kong' || process.env.BENCH_GATEWAY === 'harness'
    ? process.env.BENCH_GATEWAY
    : locateKong()
      ? 'kong'
      : 'harness';
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const RL_LIMITS = (process.env.BENCH_RL_LIMITS ?? '20,35')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const REJECT_PAUSE_MS = Number(process.env.BENCH_REJECT_PAUSE_MS ?? 0);
/** The goals of issue 8: victim p99 under flood within 1.3x alone, utilisation >= 95 %. */
const GOAL_RATIO = 1.3;
const GOAL_UTIL = 0.95;
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

/**
 * `workers` closed-loop clients of one tenant until `until`, spread over `urls` (gateway
 * nodes) in turn; think time between requests, and a pause after a 429 if asked.
 */
async function load(
  urls: string | string[],
  key: string,
  workers: number,
  until: number,
  thinkMs = 0,
  rejectPauseMs = 0,
): Promise<Sample[]> {
  const list = typeof urls === 'string' ? [urls] : urls;
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const out: Sample[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      const url = list[w % list.length] as string;
      while (Date.now() < until) {
        const s = await request(agent, url, key);
        out.push(s);
        const pause = s.status === 429 ? Math.max(thinkMs, rejectPauseMs) : thinkMs;
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
    }),
  );
  agent.destroy();
  return out;
}

/**
 * The mock upstream in its own process (dist/mock-upstream/cli.js): the load generator's
 * event loop (80 flood workers, a stream of 429s) must not slow the upstream's service
 * time down, nor its clock.
 */
interface UpstreamProcess {
  url: string;
  stats(): Promise<MockStats>;
  close(): Promise<void>;
}

async function startUpstreamProcess(): Promise<UpstreamProcess> {
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'dist', 'mock-upstream', 'cli.js'),
      '--port',
      '0',
      '--latency-ms',
      String(SERVICE_MS),
      '--capacity',
      String(SEATS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (l) => {
      const m = /^mock-upstream ready (\S+)/.exec(l);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`mock upstream exited (${code})`)));
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  return {
    url,
    stats: () =>
      new Promise((resolve, reject) => {
        http
          .get(`${url}/__mock/stats`, { agent }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString('utf8')));
            res.on('end', () => resolve(JSON.parse(text) as MockStats));
          })
          .on('error', reject);
      }),
    close: () =>
      new Promise((resolve) => {
        agent.destroy();
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * From now until `until` (the end of the flood): the upstream's utilisation (requests it
 * completed ÷ what its seats could complete in that time) and the mean busy seats ÷ seats
 * (sampled every 25 ms). `during` (the victims) is awaited too.
 */
async function utilisation<T>(
  upstream: UpstreamProcess,
  until: number,
  during: Promise<T>,
): Promise<[T, { util: number; busy: number }]> {
  let sum = 0;
  let n = 0;
  const t0 = Date.now();
  const served0 = (await upstream.stats()).served;
  while (Date.now() < until) {
    sum += (await upstream.stats()).inFlight;
    n++;
    await new Promise((r) => setTimeout(r, 25));
  }
  const served = (await upstream.stats()).served - served0;
  const elapsed = Math.max(1, Date.now() - t0);
  const result = await during;
  return [
    result,
    { util: (served * SERVICE_MS) / (elapsed * SEATS), busy: n ? sum / n / SEATS : 0 },
  ];
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

/** Throughput shares of the 1:2:4 tenants, all backlogged, through `urls` (one or more nodes). */
async function weightedShares(urls: string[]): Promise<{
  done: number[];
  jain: number;
  off: number[];
}> {
  const until = Date.now() + SECONDS * 1000;
  const measureFrom = Date.now() + 2000;
  const runs = await Promise.all(
    (['share-1', 'share-2', 'share-4'] as const).map((t) =>
      load(urls, `${t}-key`, SEATS * 4, until),
    ),
  );
  // Only completions inside the window: after it, every tenant's backlog drains and would
  // add the same count to each, flattening the shares.
  const done = runs.map(
    (s) => s.filter((x) => x.status === 200 && x.at >= measureFrom && x.at <= until).length,
  );
  const total = done.reduce((a, b) => a + b, 0) || 1;
  const normalised = done.map((d, i) => d / total / ((WEIGHTS[i] ?? 1) / WSUM));
  const jain =
    normalised.reduce((a, b) => a + b, 0) ** 2 /
    (normalised.length * normalised.reduce((a, b) => a + b * b, 0) || 1);
  return { done, jain, off: normalised.map((n) => n - 1) };
}

const WEIGHTS = [1, 2, 4];
const WSUM = 7;
const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)} %`;
const list = (xs: string[]) =>
  xs.length <= 1 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`;

interface Setup {
  name: string;
  route: string;
  /** Short name in the chart and the summary. */
  short: string;
  color?: string;
}

interface Outcome {
  setup: Setup;
  alone: number;
  flood: number;
  ratio: number;
  /** Mean busy seats ÷ seats. */
  util: number;
  /** Completed requests ÷ what the seats could complete. */
  done: number;
  victims: Sample[];
  floodSamples: Sample[];
  start: number;
}

async function main(): Promise<void> {
  const load1 = os.loadavg()[0] ?? 0;
  const upstream = await startUpstreamProcess();
  const run = randomBytes(4).toString('hex');
  const metricsPort = await new Promise<number>((resolve) => {
    const probe = http.createServer().listen(0, '127.0.0.1', () => {
      const a = probe.address();
      probe.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
  const ratelimit = (route: string, extra: Record<string, unknown> = {}) => ({
    name: 'tenant-ratelimit',
    route,
    config: {
      metrics_port: metricsPort,
      redis: { url: REDIS_URL, key_namespace: `bench-${run}-${route}`, command_timeout_ms: 1000 },
      queue: { upstream: `bench-${route}`, max_concurrent: SEATS, max_wait_ms: 20000 },
      ...extra,
    },
  });
  const redisAt = new URL(REDIS_URL);
  // Kong's bundled rate-limiting, what platform teams use today: a static limit per consumer
  // per second, counted in the same Redis (redis policy, synchronous counters).
  const rlRoutes = GATEWAY === 'kong' ? RL_LIMITS.map((n) => `rl${n}`) : [];
  const bundledRateLimiting = RL_LIMITS.map((n) => ({
    name: 'rate-limiting',
    route: `rl${n}`,
    config: {
      second: n,
      limit_by: 'consumer',
      policy: 'redis',
      sync_rate: -1,
      fault_tolerant: false,
      redis: {
        host: redisAt.hostname,
        port: Number(redisAt.port || 6379),
        timeout: 1000,
      },
    },
  }));
  const routes = ['fifo', ...rlRoutes, 'wfq', 'wfqpipe', 'shares'];
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
      ...(GATEWAY === 'kong' ? bundledRateLimiting : []),
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
  const startNode = async (node: number): Promise<Gateway> =>
    GATEWAY === 'kong'
      ? await startKong({ ...opts, workers: 2, label: `bench-ratelimit-node${node}` })
      : await startGateway(opts);
  const gateway = await startNode(0);
  let second: Gateway | undefined;
  const url = (route: string, gw: Gateway = gateway) => `${gw.url}/${route}/v1/chat/completions`;
  const redis = createClient({ url: REDIS_URL });
  await redis.connect();

  try {
    // Warm-up: JIT, sockets, scripts loaded in Redis.
    for (const r of routes) await load(url(r), 'victim-b-key', 2, Date.now() + 1500);

    // --- 3. The unqueued path: Redis round trips and PDK calls.
    // The plugin's own count of the batches it sent to Redis, by phase: only this route's
    // requests run meanwhile, and other clients of the Redis do not count.
    const roundTrips = async (): Promise<Record<string, number>> => {
      const text = await new Promise<string>((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (b += c));
            res.on('end', () => resolve(b));
          })
          .on('error', reject);
      });
      const out: Record<string, number> = { access: 0, queue: 0, log: 0 };
      for (const m of text.matchAll(
        /^tenant_ratelimit_redis_round_trips_total\{phase="(\w+)"\} (\d+)/gm,
      )) {
        out[m[1] ?? ''] = Number(m[2]);
      }
      return out;
    };
    const before = await roundTrips();
    const seq = await load(url('wfq'), 'victim-c-key', 1, Date.now() + 3000);
    await new Promise((r) => setTimeout(r, 300)); // last log phases
    const after = await roundTrips();
    const trips = Object.fromEntries(
      ['access', 'queue', 'log'].map((p) => [p, ((after[p] ?? 0) - (before[p] ?? 0)) / seq.length]),
    );
    const tripsPerRequest = Object.values(trips).reduce((a, b) => a + b, 0);
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
      const start = Date.now();
      const until = start + SECONDS * 1000;
      const floodP = load(url(route), 'flood-key', SEATS * FLOOD_FACTOR, until, 0, REJECT_PAUSE_MS);
      // Victims start once the flood has filled the queue.
      await new Promise((r) => setTimeout(r, 1500));
      const [[b, c], util] = await utilisation(
        upstream,
        until,
        Promise.all([
          load(url(route), 'victim-b-key', 1, until, VICTIM_THINK_MS),
          load(url(route), 'victim-c-key', 1, until, VICTIM_THINK_MS),
        ]),
      );
      const a = await floodP;
      // The goal's utilisation: no seat left idle (seats busy); completions are reported beside it.
      return { victims: [...b, ...c], flood: a, util: util.busy, done: util.util, start };
    };
    const setups: Setup[] = [
      {
        name: 'plain FIFO (tenant-auth only; the upstream queues)',
        route: 'fifo',
        short: 'plain FIFO',
        color: '#d62728',
      },
      ...rlRoutes.map((r, i) => ({
        name: `Kong's rate-limiting, ${RL_LIMITS[i]}/s per consumer (redis policy)`,
        route: r,
        short: `rate-limiting ${RL_LIMITS[i]}/s`,
        color: ['#ff7f0e', '#9467bd', '#8c564b'][i] ?? '#7f7f7f',
      })),
      {
        name: `tenant-ratelimit fair queue, max_concurrent ${SEATS} (= the upstream's seats)`,
        route: 'wfq',
        short: 'fair queue',
        color: '#2ca02c',
      },
      {
        name: `tenant-ratelimit fair queue, max_concurrent ${SEATS + 1} (one in the pipe)`,
        route: 'wfqpipe',
        short: `fair queue +1`,
      },
    ];
    const outcomes: Outcome[] = [];
    for (const setup of setups) {
      const alone = await victimsAlone(setup.route);
      await new Promise((r) => setTimeout(r, 500));
      const f = await flood(setup.route);
      await new Promise((r) => setTimeout(r, 2500)); // drain
      outcomes.push({
        setup,
        alone: p99(alone),
        flood: p99(f.victims),
        ratio: p99(f.victims) / p99(alone),
        util: f.util,
        done: f.done,
        victims: f.victims,
        floodSamples: f.flood,
        start: f.start,
      });
    }
    const rows = outcomes.map((o) => [
      o.setup.name,
      o.alone.toFixed(0),
      o.flood.toFixed(0),
      `**${o.ratio.toFixed(2)}×**`,
      pct(o.util),
      pct(o.done),
      `${ok(o.victims)}/${o.victims.length}`,
      `${ok(o.floodSamples)}/${o.floodSamples.length}`,
      o.ratio <= GOAL_RATIO && o.util >= GOAL_UTIL ? 'yes' : 'no',
    ]);
    const summary = outcomes.map(
      (o) =>
        `${o.setup.route}: victim p99 ${o.ratio.toFixed(2)}x alone, utilisation ${pct(o.util)}`,
    );

    // The chart: victim latency over time under the flood, one series per setup drawn.
    const charted = outcomes.filter((o) => o.setup.color !== undefined);
    const series: Series[] = charted.map((o) => ({
      label: `${o.setup.short}: p99 ${o.flood.toFixed(0)} ms (${o.ratio.toFixed(1)}× alone), utilisation ${pct(o.util, 0)}`,
      color: o.setup.color as string,
      points: o.victims
        .filter((v) => v.status === 200)
        .map((v) => ({ t: (v.at - v.ms - o.start) / 1000, ms: v.ms })),
    }));
    const fifo = outcomes.find((o) => o.setup.route === 'fifo');
    const chartFile = `noisy-neighbour-${GATEWAY}${SERVICE_MS === 100 ? '' : `-${SERVICE_MS}ms`}.svg`;
    writeFileSync(
      path.join(ROOT, 'docs', chartFile),
      latencyChart({
        title: `Victim latency under a ${FLOOD_FACTOR}× flood (${GATEWAY === 'kong' ? 'real Kong 3.9.3' : 'harness'})`,
        subtitle: `Upstream ${SEATS} seats × ${SERVICE_MS} ms; tenant A: ${SEATS * FLOOD_FACTOR} closed-loop workers; victims B and C: one request at a time. Victims start 1.5 s in.`,
        seconds: SECONDS,
        series,
        ...(fifo
          ? {
              reference: {
                ms: fifo.alone,
                label: `victim p99 alone (FIFO route): ${fifo.alone.toFixed(0)} ms`,
              },
            }
          : {}),
      }),
    );

    // --- 2. Weighted shares, all backlogged: one node, then two nodes on the one Redis.
    const one = await weightedShares([url('shares')]);
    second = await startNode(1);
    await load(url('shares', second), 'victim-b-key', 2, Date.now() + 1500); // warm-up
    const two = await weightedShares([url('shares'), url('shares', second)]);
    const shareRows = WEIGHTS.map((w, i) => [
      `share-${w}`,
      w,
      pct(w / WSUM),
      ...[one, two].flatMap((r) => {
        const total = r.done.reduce((a, b) => a + b, 0) || 1;
        return [r.done[i] ?? 0, pct((r.done[i] ?? 0) / total), pct(r.off[i] ?? 0)];
      }),
    ]);
    const within = (r: { off: number[] }) => r.off.every((o) => Math.abs(o) <= 0.05);
    summary.push(`shares 1 node ${one.done.join(':')}, Jain ${one.jain.toFixed(4)}`);
    summary.push(`shares 2 nodes ${two.done.join(':')}, Jain ${two.jain.toFixed(4)}`);

    const met = outcomes.filter((o) => o.ratio <= GOAL_RATIO && o.util >= GOAL_UTIL);
    const missed = outcomes.filter((o) => !met.includes(o));
    const verdict = `In this run, ${
      met.length
        ? `${list(met.map((o) => `**${o.setup.short}**`))} met both goals`
        : 'no setup met both goals'
    } (victim p99 under the flood ≤ ${GOAL_RATIO}× alone **and** utilisation ≥ ${pct(GOAL_UTIL, 0)})${
      missed.length
        ? `; ${list(
            missed.map(
              (o) =>
                `${o.setup.short} gave ${o.ratio.toFixed(2)}× at ${pct(o.util)}${
                  o.ratio > GOAL_RATIO && o.util < GOAL_UTIL
                    ? ' (missed both)'
                    : o.ratio > GOAL_RATIO
                      ? ' (latency missed)'
                      : ' (utilisation missed)'
                }`,
            ),
          )}`
        : ''
    }.`;
    const sharesVerdict = (r: { off: number[]; jain: number }, where: string) =>
      `${where}: Jain's index **${r.jain.toFixed(4)}** (goal ≥ 0.99: ${r.jain >= 0.99 ? 'met' : 'missed'}), every share ${
        within(r) ? 'within' : '**not** within'
      } ±5 % of its weight (largest deviation ${pct(Math.max(...r.off.map(Math.abs)))}).`;

    const body = `## tenant-ratelimit: noisy neighbour and weighted shares

Command: \`npm run bench\` (bench/tenant-ratelimit.ts; \`BENCH_GATEWAY=${GATEWAY} BENCH_SECONDS=${SECONDS} BENCH_SERVICE_MS=${SERVICE_MS} BENCH_RL_LIMITS=${RL_LIMITS.join(',')} BENCH_REJECT_PAUSE_MS=${REJECT_PAUSE_MS}\`), gateway: ${
      GATEWAY === 'kong' ? 'the real Kong 3.9.3 (2 workers)' : 'the harness'
    }, real Redis; 1-minute load average at the start: ${load1.toFixed(1)} on ${os.cpus().length} CPUs (above that, timings are the machine's as much as the gateway's). Mock upstream: ${SEATS} seats × ${SERVICE_MS} ms
(${(SEATS * 1000) / SERVICE_MS} requests/s), over capacity it queues FIFO. Tenant A floods with
${SEATS * FLOOD_FACTOR} closed-loop workers (${FLOOD_FACTOR}× the seats) for ${SECONDS} s${
      REJECT_PAUSE_MS > 0
        ? `, pausing ${REJECT_PAUSE_MS} ms after a 429`
        : ', retrying at once after a 429'
    }; victims B and C
each send one request at a time with ${VICTIM_THINK_MS} ms between them (well below their share).
"alone" is the victims' p99 with no flood, measured just before, on the same route. Utilisation is
the mean number of busy upstream seats ÷ ${SEATS}, sampled every 25 ms from the victims' start to the
flood's end (idle seats are capacity the protection left unused). "completed ÷ capacity" is what
the upstream finished in that time ÷ what ${SEATS} seats × ${SERVICE_MS} ms could finish: below the
utilisation when the machine slows the mock's service time down.
The mock upstream runs in its own process.
${
  rlRoutes.length
    ? `Kong's bundled \`rate-limiting\` (what platform teams use today) limits every consumer to a
static number of requests per second (${RL_LIMITS.map((n) => `${n}/s`).join(', ')}; \`policy: redis\` on the same Redis,
\`limit_by: consumer\`); its 429s count as the flood's non-200s.`
    : `Kong's bundled \`rate-limiting\` rows need the real Kong (the harness has no such plugin).`
}
tenant-ratelimit's queue declares the upstream's capacity (\`queue.max_concurrent: ${SEATS}\`, or
one more, so that the next request is already at the upstream when a seat frees); all tenants
weight 1; no per-tenant limits are set, so tenant-ratelimit answers no 429 here.

${table(['setup', 'victim p99 alone ms', 'victim p99 under flood ms', 'under flood ÷ alone', 'upstream utilisation (seats busy)', 'completed ÷ capacity', 'victim 200s', 'flood 200s', 'both goals'], rows)}

${verdict}

![Victim latency over time under the flood](${chartFile})

[${chartFile}](${chartFile}): every victim request during the flood, by its start time and latency
(log scale), for ${list(charted.map((o) => o.setup.short))}.

### Weighted shares

Three tenants on plans of weight 1, 2 and 4, each with ${SEATS * 4} closed-loop workers on the same
fair queue (${SEATS} seats) for ${SECONDS} s; completions counted after the first 2 s. First
through one gateway node, then through two ${
      GATEWAY === 'kong'
        ? 'real Kong nodes (each with its own plugin servers)'
        : 'harness gateways (each with its own plugin servers)'
    } on the one Redis, each tenant's workers split between them. Off target: achieved share ÷ target share − 1.

${sharesVerdict(one, 'One node')}
${sharesVerdict(two, 'Two nodes')}

${table(['tenant', 'weight', 'target share', '1 node: completed', '1 node: share', '1 node: off target', '2 nodes: completed', '2 nodes: share', '2 nodes: off target'], shareRows)}

### The unqueued path

One tenant, sequential requests, seats free: **${tripsPerRequest.toFixed(2)} Redis round trips
per request** (target ≤ 2): access ${trips.access?.toFixed(2)}, queue ${trips.queue?.toFixed(2)},
log ${trips.log?.toFixed(2)} (${seq.length} requests; the plugin's
\`tenant_ratelimit_redis_round_trips_total\` by phase, one per batch of scripts written
together: tenant-admit + fair-queue acquire in access, tenant-settle + fair-queue release in
log).${
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
    if (second) await second.close();
    await gateway.close();
    await upstream.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
