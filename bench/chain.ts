/**
 * What the chain costs per request on the real Kong 3.9.3 (and on the harness): the repo's
 * kong.yml, its upstream pointed at a mock that answers at once, against the same Kong running
 * key-auth alone, in the same run.
 *
 * Per request shape (a cacheable miss, a cache hit, a request the cache bypasses, a streamed
 * request, a refusal) and per setup (the chain co-hosted in one plugin-server process or one
 * process per plugin; with retrieval-injector and the semantic cache, or without them):
 * added p50/p99 at c=1, plugin-server CPU per request (all of ours, and the busiest process),
 * nginx worker CPU per request over key-auth alone, req/s at c=16 (the miss), time to first
 * byte of a stream against the mock directly, and the PDK exchanges per plugin and phase
 * (counted by the harness, which sees every RPC; the plugin code is the same on Kong).
 *
 * Run: `npm run bench -- chain`. BENCH_REQUESTS (c=1 per shape, default 400),
 * BENCH_CONCURRENT_REQUESTS (c=16, default 1500).
 * `BENCH_CHAIN_KONG_QUICK=1`: the issue's targets only, round after round (its own section).
 * `BENCH_CHAIN_AB=<another checkout, built>`: a change judged on the real Kong, the other
 * checkout's chain ("A") and this one's ("B") running at once and measured side by side
 * (`measurePaired`), per shape (BENCH_AB_SHAPES, default miss,hit,stream; BENCH_QUICK_ROUNDS
 * rounds; BENCH_AB_FULL=1 with retrieval and the semantic cache); printed, nothing written.
 */
import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startGateway } from '../harness/index';
import type { Gateway, PluginServerMode } from '../harness/types';
import { locateKong, startKong, type KongGateway } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';
import { chainConfig, serversFor, type Declarative } from './lib/chain-config';
import { sendChat, type Sample } from './lib/chat-client';
import { freePort } from '../test/helpers/upstreams';
import { createClient } from 'redis';

const ROOT = path.resolve(__dirname, '..');
const SEQUENTIAL = Number(process.env.BENCH_REQUESTS ?? 400);
const CONCURRENT_TOTAL = Number(process.env.BENCH_CONCURRENT_REQUESTS ?? 1500);
const CONCURRENCY = 16;
const RUN = randomBytes(4).toString('hex');

/**
 * BENCH_PROFILE=<dir>: every plugin server samples its CPU (bench/lib/cpu-profile.cjs) and the
 * quick run writes one .cpuprofile per shape there (`node bench/lib/profile-summary.cjs <files>`
 * sums self time by package and function).
 */
const PROFILE_DIR = process.env.BENCH_PROFILE ? path.resolve(process.env.BENCH_PROFILE) : null;

const PLUGIN_ENV = {
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  MILVUS_ADDRESS: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
  KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex'),
  KTA_CACHE_MASTER_KEY: randomBytes(32).toString('hex'),
  ...(PROFILE_DIR
    ? {
        NODE_OPTIONS: `--require ${path.join(__dirname, 'lib', 'cpu-profile.cjs')}`,
        KTA_PROFILE_DIR: PROFILE_DIR,
      }
    : {}),
};

/** Asks every profiled plugin server for its profile so far (named by pid and time). */
async function dumpProfiles(pids: number[], label: string): Promise<void> {
  if (!PROFILE_DIR) return;
  mkdirSync(PROFILE_DIR, { recursive: true });
  const before = new Set(readdirSync(PROFILE_DIR));
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 1500));
  for (const f of readdirSync(PROFILE_DIR))
    if (!before.has(f) && f.endsWith('.cpuprofile'))
      renameSync(path.join(PROFILE_DIR, f), path.join(PROFILE_DIR, `${label}-${f}`));
}

type Shape = 'miss' | 'hit' | 'bypass' | 'stream' | 'refused' | 'long';
const SHAPES: Shape[] = ['miss', 'hit', 'bypass', 'stream', 'refused'];

/** Words of English prose (this repository's architecture page), for the long prompt. */
const PROSE = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8')
  .split(/\s+/)
  .filter((w) => /^[A-Za-z][A-Za-z,.;:'()-]*$/.test(w));
/** Words in the long prompt: about 1,500 tokens of o200k_base. */
const LONG_WORDS = 1_200;

/** `LONG_WORDS` consecutive words of `PROSE` from a random place, and the request's number. */
function longPrompt(i: number): string {
  const from = Math.floor(Math.random() * Math.max(1, PROSE.length - LONG_WORDS));
  return `${PROSE.slice(from, from + LONG_WORDS).join(' ')} (${i})`;
}

function requestOf(shape: Shape, i: number): { key: string; body: string } {
  const user = (content: string) => [{ role: 'user', content }];
  const base = { model: 'gpt-4o-mini', max_tokens: 16 };
  switch (shape) {
    case 'miss':
      // Words of their own each time: the semantic cache must not take it for a near-duplicate.
      return {
        key: 'acme-demo-key',
        body: JSON.stringify({
          ...base,
          temperature: 0,
          messages: user(
            `${Array.from({ length: 8 }, () => randomBytes(4).toString('hex')).join(' ')} ${i}?`,
          ),
        }),
      };
    case 'long':
      // A prompt of the length a chat with history or retrieved context sends: the estimate's
      // tokenizer on the request path costs with its length (docs/operations.md, capacity).
      return {
        key: 'acme-demo-key',
        body: JSON.stringify({ ...base, temperature: 0, messages: user(longPrompt(i)) }),
      };
    case 'hit':
      return {
        key: 'acme-demo-key',
        body: JSON.stringify({ ...base, temperature: 0, messages: user(`the same ${RUN}?`) }),
      };
    case 'bypass':
      return {
        key: 'acme-demo-key',
        body: JSON.stringify({ ...base, messages: user('What is the capital of France?') }),
      };
    case 'stream':
      return {
        key: 'acme-demo-key',
        body: JSON.stringify({
          ...base,
          stream: true,
          stream_options: { include_usage: true },
          messages: user('Say something.'),
        }),
      };
    case 'refused':
      return {
        key: 'globex-demo-key',
        body: JSON.stringify({ ...base, messages: user('hello') }),
      };
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

const send = (url: string, key: string, body: string): Promise<Sample> =>
  sendChat(url, key, body, agent);

/** Requests sent to every gateway the bench starts before it measures anything (BENCH_WARMUP). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3000);
const WARMUP_SHAPES: Shape[] = ['miss', 'hit', 'bypass', 'stream', 'long', 'refused'];

/**
 * Brings a gateway just started to its steady state: WARMUP requests of every shape, four at a
 * time. A plugin server's first thousands of requests run code V8 has not optimised yet, and
 * its optimising compiler then works on other threads of the process: after 100 misses the
 * co-hosted chain still spent about 0.9 ms of CPU per request compiling (four V8 threads,
 * `perf`), after 3,000 about 0.06 ms, and its main thread 2.1 ms against 1.5 ms. A gateway
 * serves millions of requests per process; the bench measures what those cost, not the first
 * few hundred. (Before 2026-12-08 a shape was measured after 30 requests of its own.)
 */
async function warmUp(gw: Gateway): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < WARMUP) {
      const n = next++;
      const { key, body } = requestOf(WARMUP_SHAPES[n % WARMUP_SHAPES.length]!, 1_000_000 + n);
      await send(gw.url, key, body);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}

/**
 * Waits (up to 15 s) until the plugin servers spend under 2 % of a core: what a process still
 * does after its warm-up requests (its counting thread building the tokenizer's encodings, in
 * the background since startup) is not the first shape's cost per request.
 */
async function untilIdle(pids: number[]): Promise<void> {
  const busy = () => pids.reduce((a, p) => a + cpuMs(p), 0);
  for (let i = 0; i < 30; i++) {
    const before = busy();
    await new Promise((r) => setTimeout(r, 500));
    if (busy() - before < 10) return;
  }
}

/** utime + stime of a process, in ms (0 when it is gone). */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ is 100
  } catch {
    return 0;
  }
}

/** nginx workers of a Kong (children of the master named in its prefix). */
function nginxWorkers(gw: Gateway): number[] {
  const prefix = (gw as Partial<KongGateway>).prefix;
  if (!prefix) return [];
  let master: number;
  try {
    master = Number(readFileSync(path.join(prefix, 'pids', 'nginx.pid'), 'utf8').trim());
  } catch {
    return [];
  }
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return (
          ppid === master && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('nginx: worker')
        );
      } catch {
        return false;
      }
    });
}

const BATCH_SNIPPETS = ['pdk-batch.lua', 'pdk-log-facts.lua'].map((f) =>
  readFileSync(path.join(ROOT, 'lib', 'pluginserver', f), 'utf8'),
);

/** kong.yml's pre-function without the PDK batch snippets (lib/pluginserver/batch.ts falls back). */
function withoutBatchSnippets(config: Declarative): void {
  for (const p of config.plugins ?? []) {
    if (p.name !== 'pre-function' || !p.config) continue;
    for (const phase of ['access', 'log']) {
      const list = p.config[phase];
      if (Array.isArray(list)) p.config[phase] = list.filter((x) => !BATCH_SNIPPETS.includes(x));
    }
  }
}

/** Free metrics ports for our plugins: kta_pdk_exchanges_total is read from them. */
async function withMetricsPorts(config: Declarative): Promise<number[]> {
  const ports: number[] = [];
  for (const p of config.plugins ?? []) {
    if (p.config && 'metrics_port' in p.config) {
      const port = await freePort();
      p.config.metrics_port = port;
      ports.push(port);
    }
  }
  return ports;
}

/**
 * Exchanges with Kong so far, per plugin and phase, as the plugin servers count them
 * (lib/pluginserver/batch.ts): one process serves every port's copy of its own counts, so the
 * union by plugin and phase is the total in both layouts.
 */
async function exchangeCounts(ports: number[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const port of ports) {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    for (const m of text.matchAll(
      /^kta_pdk_exchanges_total\{plugin="([^"]+)",phase="([^"]+)"\} (\d+)/gm,
    )) {
      out.set(`${m[1]} ${m[2]}`, Number(m[3]));
    }
  }
  return out;
}

/**
 * Round trips Redis has served so far: its `total_reads_processed` (one per read of a client's
 * socket, so commands a client pipelined in one write count once), read with INFO on a
 * connection of the bench's own. Counted over a shape's c=1 requests, while only the measured
 * chain talks to this Redis (the key-auth side has no Redis), as the issue asks beside the PDK
 * exchanges. A script is one round trip, whatever it runs inside.
 */
let statsClient: ReturnType<typeof createClient> | undefined;
async function redisReads(): Promise<number | undefined> {
  try {
    if (!statsClient) {
      statsClient = createClient({ url: PLUGIN_ENV.REDIS_URL });
      statsClient.on('error', () => undefined);
      await statsClient.connect();
    }
    const info = await statsClient.info('stats');
    const m = /^total_reads_processed:(\d+)/m.exec(info);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Redis round trips per request between two readings; the second INFO's own read taken off. */
function perRequest(r0: number | undefined, r1: number | undefined, n: number): number | undefined {
  return r0 === undefined || r1 === undefined ? undefined : (r1 - r0 - 1) / n;
}

function total(m: Map<string, number>): number {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
}

interface Measured {
  /** Exchanges per request counted by the plugin servers (the real Kong included). */
  exchanges?: number;
  /** Redis round trips per request at c=1 (`redisReads`). */
  redisTrips?: number;
  p50: number;
  p99: number;
  ttfbP50: number;
  pluginCpu: number;
  busiestCpu: number;
  nginxCpu: number;
  rps?: number;
  statuses: Record<number, number>;
}

async function measureShape(
  gw: Gateway,
  shape: Shape,
  pluginPids: number[],
  withRps: boolean,
  metricsPorts: number[] = [],
): Promise<Measured> {
  const url = gw.url;
  const statuses: Record<number, number> = {};
  let i = 0;
  const one = async () => {
    const { key, body } = requestOf(shape, i++);
    const r = await send(url, key, body);
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    return r;
  };
  for (let w = 0; w < 30; w++) await one();
  await untilIdle(pluginPids);
  for (const k of Object.keys(statuses)) delete statuses[Number(k)];
  // After the warm-up: a worker just started still bears the master's name.
  const workers = nginxWorkers(gw);
  const before = pluginPids.map(cpuMs);
  const nginx0 = workers.reduce((a, p) => a + cpuMs(p), 0);
  const ms: number[] = [];
  const ttfb: number[] = [];
  const ex0 = metricsPorts.length ? total(await exchangeCounts(metricsPorts)) : 0;
  const r0 = pluginPids.length ? await redisReads() : undefined;
  for (let n = 0; n < SEQUENTIAL; n++) {
    const r = await one();
    ms.push(r.ms);
    ttfb.push(r.ttfbMs);
  }
  let exchanges: number | undefined;
  // The last request's log phases run after its response.
  if (metricsPorts.length || r0 !== undefined) await new Promise((r) => setTimeout(r, 300));
  if (metricsPorts.length) {
    exchanges = (total(await exchangeCounts(metricsPorts)) - ex0) / SEQUENTIAL;
  }
  const redisTrips = r0 === undefined ? undefined : perRequest(r0, await redisReads(), SEQUENTIAL);
  let rps: number | undefined;
  let sent = 0;
  if (withRps) {
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (sent < CONCURRENT_TOTAL && Date.now() - t0 < 90_000) {
          sent++;
          await one();
        }
      }),
    );
    rps = sent / ((Date.now() - t0) / 1000);
  }
  // CPU over every request measured (c=1 and c=16): /proc counts in 10 ms ticks.
  const after = pluginPids.map(cpuMs);
  const nginx1 = workers.reduce((a, p) => a + cpuMs(p), 0);
  const deltas = after.map((a, k) => a - (before[k] ?? 0));
  const count = SEQUENTIAL + sent;
  ms.sort((a, b) => a - b);
  ttfb.sort((a, b) => a - b);
  return {
    p50: percentile(ms, 50),
    p99: percentile(ms, 99),
    ttfbP50: percentile(ttfb, 50),
    pluginCpu: deltas.reduce((a, b) => a + b, 0) / count,
    busiestCpu: Math.max(0, ...deltas) / count,
    nginxCpu: (nginx1 - nginx0) / count,
    statuses,
    ...(rps === undefined ? {} : { rps }),
    ...(exchanges === undefined ? {} : { exchanges }),
    ...(redisTrips === undefined ? {} : { redisTrips }),
  };
}

/** One side of a paired measurement: a gateway, the shape it is sent, what to count on it. */
interface Side {
  gw: Gateway;
  shape: Shape;
  pids: number[];
  metricsPorts: number[];
}

/** Requests per block in a paired measurement (BENCH_BLOCK). */
const BLOCK = Number(process.env.BENCH_BLOCK ?? 25);

/**
 * Two (or more) gateways measured together, running at once: blocks of BLOCK requests at c=1
 * go to each in turn (the order swapped every block), then the c=16 load in quarters, in turn.
 * A change in the machine's load (this machine is shared) then falls on every side alike,
 * within a block's time (tens of ms), where measuring one after the other let it fall on one
 * side only. Within a block a side's requests follow each other as in `measureShape`.
 */
async function measurePaired(sides: Side[], withRps: boolean): Promise<Measured[]> {
  const state = sides.map((side) => ({
    side,
    i: 0,
    statuses: {} as Record<number, number>,
    ms: [] as number[],
    ttfb: [] as number[],
    sent: 0,
    busyMs: 0,
    workers: [] as number[],
    cpu0: [] as number[],
    nginx0: 0,
    ex0: 0,
  }));
  // Redis round trips are counted for the one side with plugin servers (none when two have).
  const redisSide =
    sides.filter((side) => side.pids.length).length === 1
      ? sides.findIndex((side) => side.pids.length)
      : -1;
  let r0: number | undefined;
  const one = async (st: (typeof state)[number]) => {
    const { key, body } = requestOf(st.side.shape, st.i++);
    const r = await send(st.side.gw.url, key, body);
    st.statuses[r.status] = (st.statuses[r.status] ?? 0) + 1;
    return r;
  };
  for (const st of state) for (let w = 0; w < 30; w++) await one(st);
  await untilIdle(state.flatMap((st) => st.side.pids));
  for (const st of state) {
    st.statuses = {};
    st.workers = nginxWorkers(st.side.gw);
    st.cpu0 = st.side.pids.map(cpuMs);
    st.nginx0 = st.workers.reduce((a, p) => a + cpuMs(p), 0);
    st.ex0 = st.side.metricsPorts.length ? total(await exchangeCounts(st.side.metricsPorts)) : 0;
  }
  if (redisSide >= 0) r0 = await redisReads();
  const blocks = Math.ceil(SEQUENTIAL / BLOCK);
  for (let b = 0; b < blocks; b++) {
    const order = b % 2 === 0 ? state : [...state].reverse();
    for (const st of order) {
      for (let n = 0; n < BLOCK && st.ms.length < SEQUENTIAL; n++) {
        const r = await one(st);
        st.ms.push(r.ms);
        st.ttfb.push(r.ttfbMs);
      }
    }
  }
  const exchanges: Array<number | undefined> = [];
  await new Promise((r) => setTimeout(r, 300));
  for (const st of state) {
    exchanges.push(
      st.side.metricsPorts.length
        ? (total(await exchangeCounts(st.side.metricsPorts)) - st.ex0) / SEQUENTIAL
        : undefined,
    );
  }
  const redisTrips = redisSide >= 0 ? perRequest(r0, await redisReads(), SEQUENTIAL) : undefined;
  if (withRps) {
    const quarter = Math.ceil(CONCURRENT_TOTAL / 4);
    for (let q = 0; q < 4; q++) {
      const order = q % 2 === 0 ? state : [...state].reverse();
      for (const st of order) {
        const t0 = Date.now();
        let sent = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            while (sent < quarter && Date.now() - t0 < 30_000) {
              sent++;
              await one(st);
            }
          }),
        );
        st.sent += sent;
        st.busyMs += Date.now() - t0;
      }
    }
  }
  return state.map((st, k) => {
    const after = st.side.pids.map(cpuMs);
    const deltas = after.map((a, j) => a - (st.cpu0[j] ?? 0));
    const count = SEQUENTIAL + st.sent;
    const nginx1 = st.workers.reduce((a, p) => a + cpuMs(p), 0);
    st.ms.sort((a, b) => a - b);
    st.ttfb.sort((a, b) => a - b);
    const ex = exchanges[k];
    return {
      p50: percentile(st.ms, 50),
      p99: percentile(st.ms, 99),
      ttfbP50: percentile(st.ttfb, 50),
      pluginCpu: deltas.reduce((a, b) => a + b, 0) / count,
      busiestCpu: Math.max(0, ...deltas) / count,
      nginxCpu: (nginx1 - st.nginx0) / count,
      statuses: st.statuses,
      ...(withRps ? { rps: st.sent / (st.busyMs / 1000) } : {}),
      ...(ex === undefined ? {} : { exchanges: ex }),
      ...(k === redisSide && redisTrips !== undefined ? { redisTrips } : {}),
    };
  });
}

interface Setup {
  label: string;
  mode: PluginServerMode;
  lean: boolean;
  /** Without kong.yml's PDK batch snippets: every PDK call its own exchange (the A/B). */
  unbatched?: boolean;
}

const SETUPS: Setup[] = [
  { label: 'one process, lean', mode: 'chain', lean: true },
  { label: 'one process, lean, calls unbatched', mode: 'chain', lean: true, unbatched: true },
  { label: 'six processes, lean', mode: 'per-plugin', lean: true },
  { label: 'one process, + retrieval + semantic cache', mode: 'chain', lean: false },
  { label: 'six processes, + retrieval + semantic cache', mode: 'per-plugin', lean: false },
];

async function start(
  kind: 'kong' | 'harness',
  config: Declarative,
  mode: PluginServerMode,
): Promise<Gateway> {
  const opts = {
    config,
    pluginServers: serversFor(config),
    env: PLUGIN_ENV,
    pluginServerMode: mode,
  };
  const gw =
    kind === 'kong'
      ? await startKong({ ...opts, workers: 1, label: 'bench-chain' })
      : await startGateway(opts);
  try {
    await warmUp(gw);
  } catch (err) {
    await gw.close();
    throw err;
  }
  return gw;
}

const f = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? '—' : n.toFixed(2));

/** Exchanges per plugin and phase for one request of each shape (harness count). */
async function exchanges(
  config: Declarative,
  mode: PluginServerMode,
): Promise<{ rows: Array<Array<string | number>>; totals: Record<Shape, number> }> {
  const gw = await startGateway({
    config,
    pluginServers: serversFor(config),
    env: PLUGIN_ENV,
    pluginServerMode: mode,
  });
  const rows: Array<Array<string | number>> = [];
  const totals = {} as Record<Shape, number>;
  try {
    for (const shape of SHAPES) {
      let r: Sample | undefined;
      for (let i = 0; i < 4; i++) {
        const { key, body } = requestOf(shape, 10_000 + i);
        r = await send(gw.url, key, body);
      }
      const last = r as Sample;
      await gw.logDone(last.id);
      const stats = gw.requestStats(last.id);
      totals[shape] = stats?.totalRoundTrips ?? NaN;
      for (const [plugin, phases] of Object.entries(stats?.plugins ?? {})) {
        for (const [phase, s] of Object.entries(phases)) {
          rows.push([
            shape,
            plugin,
            phase,
            s.roundTrips,
            Object.entries(s.pdkCalls)
              .map(([k, n]) => (n > 1 ? `${k} ×${n}` : k))
              .sort()
              .join(', '),
          ]);
        }
      }
    }
  } finally {
    await gw.close();
  }
  return { rows, totals };
}

/**
 * The transport floor (bench/lib/transport-floor-plugin.cjs): one plugin making the chain's PDK
 * calls and Redis round trips for a miss, with none of its work, served by a plugin server of
 * ours. Its directory is made for the run (Kong wants it named after the plugin).
 */
function floorGateway(upstreamUrl: string): { config: Declarative; dir: string; root: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'kta-floor-'));
  const dir = path.join(root, FLOOR);
  mkdirSync(dir);
  writeFileSync(
    path.join(dir, `${FLOOR}.js`),
    `'use strict';\nrequire(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'pluginserver', 'harden.js'))});\n` +
      `module.exports = require(${JSON.stringify(path.join(__dirname, 'lib', 'transport-floor-plugin.cjs'))});\n`,
  );
  // kong.yml's route with its snippets (the PDK batch, the log facts, the answer capture) and
  // key-auth, without our six plugins: the floor in their place.
  const config = chainConfig(upstreamUrl, false);
  config.plugins = [...(config.plugins ?? []), { name: FLOOR, config: {} }];
  return { config, dir, root };
}

const FLOOR = 'kta-transport-floor';

/** BENCH_CHAIN_FULL=0 leaves the chain with retrieval and the semantic cache out (no Milvus). */
const WITH_FULL = process.env.BENCH_CHAIN_FULL !== '0';

/**
 * Seconds spent so far in retrieval-injector's embed-and-search and tenant-cache's semantic
 * lookups (embedding and search), from their histograms: the co-hosted process answers the
 * same registry on every port, so the first port that has a metric gives it.
 */
async function externalSeconds(ports: number[]): Promise<{
  retrieval: { sum: number; count: number };
  semantic: { sum: number; count: number };
}> {
  const out = { retrieval: { sum: NaN, count: NaN }, semantic: { sum: NaN, count: NaN } };
  const names = {
    retrieval: 'retrieval_injector_search_seconds',
    semantic: 'tenant_cache_semantic_lookup_seconds',
  } as const;
  for (const port of ports) {
    const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
    for (const key of ['retrieval', 'semantic'] as const) {
      if (!Number.isNaN(out[key].sum)) continue;
      const total = (suffix: string) => {
        let v = 0;
        let seen = false;
        for (const m of text.matchAll(
          new RegExp(`^${names[key]}_${suffix}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'),
        )) {
          v += Number(m[1]);
          seen = true;
        }
        return seen ? v : NaN;
      };
      const sum = total('sum');
      if (!Number.isNaN(sum)) out[key] = { sum, count: total('count') };
    }
  }
  // A plugin that never ran in the window has no series yet: nothing spent.
  for (const key of ['retrieval', 'semantic'] as const) {
    if (Number.isNaN(out[key].sum)) out[key] = { sum: 0, count: 0 };
  }
  return out;
}

/**
 * The issue's targets on the real Kong, run after run (BENCH_QUICK_ROUNDS, default 3): each
 * round starts Kong with key-auth alone (the bypass and the stream as references) and then
 * kong.yml's lean chain in one process, and measures the miss (with req/s at c=16), the hit
 * and the stream. Written to its own section of docs/benchmarks.md.
 */
async function kongTargets(upstreamUrl: string): Promise<void> {
  if (!locateKong()) throw new Error('BENCH_CHAIN_KONG_QUICK needs the real Kong');
  const rounds = Number(process.env.BENCH_QUICK_ROUNDS ?? 3);
  const rows: Array<Array<string | number>> = [];
  let held = 0;
  const names = ['added p50', 'plugin CPU', 'nginx CPU', 'exchanges', 'req/s', 'stream TTFB'];
  const heldPer = names.map(() => 0);
  for (let round = 1; round <= rounds; round++) {
    const load = os.loadavg()[0] ?? NaN;
    const base = await start('kong', chainConfig(upstreamUrl, false), 'chain');
    const config = chainConfig(upstreamUrl, true, true);
    const metricsPorts = await withMetricsPorts(config);
    let gw: KongGateway | undefined;
    let b: Measured;
    let bh: Measured;
    let bs: Measured;
    let bb: Measured | undefined;
    let bl: Measured | undefined;
    let bf: Measured | undefined;
    let floor: Measured | undefined;
    let bfull: Measured | undefined;
    let full: Measured | undefined;
    let external: { retrievalMs: number; semanticMs: number; calls: number } | undefined;
    const m: Partial<Record<Shape, Measured>> = {};
    try {
      gw = (await start('kong', config, 'chain')) as KongGateway;
      const chain = gw;
      const pids = [
        ...new Set(Object.keys(serversFor(config)).map((n) => chain.pluginServerInfo(n).pid)),
      ];
      const pair = async (baseShape: Shape, shape: Shape, withRps: boolean) => {
        await dumpProfiles(pids, 'warm-up');
        const out = await measurePaired(
          [
            { gw: base, shape: baseShape, pids: [], metricsPorts: [] },
            { gw: chain, shape, pids, metricsPorts },
          ],
          withRps,
        );
        await dumpProfiles(pids, `${shape}-r${round}`);
        process.stdout.write(`round ${round} ${shape}: ${JSON.stringify(out[1])}\n`);
        return out as [Measured, Measured];
      };
      // Each shape against key-auth alone carrying the same requests: the mock's own work
      // (it tokenizes the prompt and answers in the bench's process) is then the same on both
      // sides. Stop 38 and before compared the miss and the hit with the bypass request.
      [b, m.miss] = await pair('miss', 'miss', true);
      [bh, m.hit] = await pair('hit', 'hit', false);
      [bs, m.stream] = await pair('stream', 'stream', false);
      [bb] = await measurePaired(
        [{ gw: base, shape: 'bypass', pids: [], metricsPorts: [] }],
        false,
      );
      [bl, m.long] = await pair('long', 'long', false);
    } finally {
      await gw?.close();
    }
    // The transport floor, against key-auth alone the same way (the chain's Kong stopped first).
    const fl = floorGateway(upstreamUrl);
    const floorPort = await freePort();
    try {
      const fgw = await startKong({
        config: fl.config,
        pluginServers: { [FLOOR]: fl.dir },
        env: { ...PLUGIN_ENV, KTA_FLOOR_METRICS_PORT: String(floorPort) },
        pluginServerMode: 'chain',
        workers: 1,
        label: 'bench-floor',
      });
      try {
        await warmUp(fgw);
        const fpid = fgw.pluginServerInfo(FLOOR).pid;
        [bf, floor] = (await measurePaired(
          [
            { gw: base, shape: 'miss', pids: [], metricsPorts: [] },
            { gw: fgw, shape: 'miss', pids: [fpid], metricsPorts: [floorPort] },
          ],
          true,
        )) as [Measured, Measured];
        process.stdout.write(`round ${round} floor: ${JSON.stringify(floor)}\n`);
      } finally {
        await fgw.close();
      }
      if (WITH_FULL) {
        // The chain with retrieval-injector and the semantic cache: what they add to a miss over
        // the lean chain, against their own embeddings calls and Milvus searches, timed by the
        // plugins (retrieval_injector_search_seconds, tenant_cache_semantic_lookup_seconds).
        const fullConfig = chainConfig(upstreamUrl, true, false);
        const fullPorts = await withMetricsPorts(fullConfig);
        const fgw = (await start('kong', fullConfig, 'chain')) as KongGateway;
        try {
          const fpids = [
            ...new Set(Object.keys(serversFor(fullConfig)).map((n) => fgw.pluginServerInfo(n).pid)),
          ];
          const t0 = await externalSeconds(fullPorts);
          [bfull, full] = (await measurePaired(
            [
              { gw: base, shape: 'miss', pids: [], metricsPorts: [] },
              { gw: fgw, shape: 'miss', pids: fpids, metricsPorts: fullPorts },
            ],
            false,
          )) as [Measured, Measured];
          const t1 = await externalSeconds(fullPorts);
          // measurePaired's 30 warm-up requests are inside the window too.
          const n = SEQUENTIAL + 30;
          external = {
            retrievalMs: ((t1.retrieval.sum - t0.retrieval.sum) * 1000) / n,
            semanticMs: ((t1.semantic.sum - t0.semantic.sum) * 1000) / n,
            calls:
              (t1.retrieval.count - t0.retrieval.count + t1.semantic.count - t0.semantic.count) / n,
          };
          process.stdout.write(
            `round ${round} full: ${JSON.stringify(full)} ${JSON.stringify(external)}\n`,
          );
        } finally {
          await fgw.close();
        }
      }
    } finally {
      await base.close();
      rmSync(fl.root, { recursive: true, force: true });
    }
    const miss = m.miss as Measured;
    const hit = m.hit as Measured;
    const stream = m.stream as Measured;
    const added = miss.p50 - b.p50;
    const nginx = miss.nginxCpu - b.nginxCpu;
    const ratio = (miss.rps ?? NaN) / (b.rps ?? NaN);
    const ttfbBound = 1.2 * bs.ttfbP50 + 2;
    const checks = [
      added <= 3,
      miss.pluginCpu <= 2,
      nginx <= 1,
      (miss.exchanges ?? Infinity) <= 20 && (hit.exchanges ?? Infinity) <= 8,
      ratio >= 0.4,
      stream.ttfbP50 <= ttfbBound,
    ];
    if (checks.every(Boolean)) held++;
    checks.forEach((ok, i) => {
      if (ok) heldPer[i] = (heldPer[i] ?? 0) + 1;
    });
    const mark = (ok: boolean | undefined, text: string) => `${text} ${ok ? '✓' : '✗'}`;
    rows.push([
      `${round} (${load.toFixed(1)})`,
      mark(checks[0], f(added)),
      mark(checks[1], f(miss.pluginCpu)),
      mark(checks[2], f(nginx)),
      mark(checks[3], `${f(miss.exchanges)} / ${f(hit.exchanges)}`),
      `${f(miss.redisTrips)} / ${f(hit.redisTrips)} / ${f(stream.redisTrips)}`,
      mark(checks[4], `${f(ratio)}× (${f(miss.rps)} ÷ ${f(b.rps)})`),
      mark(checks[5], `${f(stream.ttfbP50)} ≤ ${f(ttfbBound)} (direct ${f(bs.ttfbP50)})`),
      `${f(hit.p50 - bh.p50)} / ${f(hit.pluginCpu)}`,
      `${f(b.p50)} / ${f(bb?.p50)} (${f(miss.p50 - (bb?.p50 ?? NaN))})`,
      `${f((m.long?.p50 ?? NaN) - (bl?.p50 ?? NaN))} / ${f(m.long?.pluginCpu)}`,
      full && bfull && external
        ? (() => {
            const extra = full.p50 - bfull.p50 - added;
            const bound = external.retrievalMs + external.semanticMs + 1;
            return `${f(extra)} ≤ ${f(bound)} (retrieval ${f(external.retrievalMs)} + semantic ${f(
              external.semanticMs,
            )} + 1; ${f(external.calls)} lookups/req) ${extra <= bound ? '✓' : '✗'}`;
          })()
        : '—',
      `${f((floor?.p50 ?? NaN) - (bf?.p50 ?? NaN))} / ${f(floor?.pluginCpu)} / ${f(
        (floor?.rps ?? NaN) / (bf?.rps ?? NaN),
      )}× / ${f(floor?.exchanges)} / ${f(floor?.redisTrips)}`,
    ]);
  }
  const body = [
    '## The chain against its targets, run after run (real Kong 3.9.3)',
    '',
    'Command: `BENCH_CHAIN_KONG_QUICK=1 npx tsx bench/chain.ts` (BENCH_QUICK_ROUNDS rounds, default',
    "3). Each round starts two Kongs side by side, key-auth alone and kong.yml's chain (one",
    'process, lean: without retrieval-injector and the semantic cache), sends each',
    `${WARMUP} requests of every shape first (bench/chain.ts \`warmUp\`: V8 optimises a plugin`,
    "server's code over its first thousands of requests, on threads of its own; before",
    '2026-12-08 a shape was measured after 30 requests and paid for that), and measures them',
    `together: blocks of ${BLOCK} requests at c=1 to each in turn (${SEQUENTIAL} per shape and`,
    `side), then ${CONCURRENT_TOTAL} at c=16 per side in quarters, in turn, so that the shared`,
    "machine's load falls on both alike (bench/chain.ts `measurePaired`). Each shape is compared",
    'with key-auth alone sent the same requests (the mock tokenizes the prompt and answers in the',
    "bench's own process, so a longer prompt costs both sides alike); the last column gives key-auth",
    "alone's p50 on the miss's requests and on the bypass request, which stop 38 and before",
    "compared the miss with (the miss's added p50 against it in brackets). The long prompt is a",
    'miss of about 1,500 tokens of prose (as a chat with history or retrieved context sends), against',
    'key-auth alone sent the same requests: not a target, the cost that grows with the prompt. The',
    "issue's targets: added p50 ≤ 3 ms, plugin-server CPU ≤ 2 ms and nginx CPU ≤ 1 ms over",
    'key-auth alone per miss, ≤ 20 exchanges per miss and ≤ 8 per hit, req/s at c=16 ≥ 0.4× key-auth',
    "alone, the stream's time to first byte ≤ 1.2 × direct + 2 ms. Round (load average at its",
    'start); ✓ where the target held in that round. Times in ms. Redis round trips per request',
    "(not a target) are Redis's own count of reads from its clients (`total_reads_processed`) over",
    "a shape's c=1 requests, log phases included: a script is one, and commands sent in one write",
    'are one. The **transport floor** (bench/lib/transport-floor-plugin.cjs) is one plugin that makes',
    "the chain's PDK calls for a miss (the same reads, the same writes and sizes, batched the same",
    'way: 5 exchanges) and its Redis round trips (trivial scripts), with none of its work (no JSON',
    'parse, tokenizer, policy, crypto or metrics), measured against key-auth alone the same way',
    "after the chain's shapes: what a miss would cost if our own code took no time at all. The",
    "issue's target for retrieval and the semantic cache: kong.yml's chain with both (a miss, 400",
    "requests at c=1 against key-auth alone the same way) may add to the lean chain's added p50 no",
    "more than their own embeddings calls and Milvus searches + 1 ms; those are the plugins' own",
    'timings (`retrieval_injector_search_seconds`: embed and search; `tenant_cache_semantic_lookup_seconds`:',
    'embed and search) per request, means over the same requests. Not in the "every target" count.',
    '',
    table(
      [
        'round (load)',
        'miss: added p50',
        'plugin CPU / miss',
        'nginx CPU / miss over key-auth',
        'exchanges miss / hit',
        'Redis round trips miss / hit / stream',
        'req/s c=16',
        'stream TTFB',
        'hit: added p50 / plugin CPU',
        "key-auth alone p50: miss's requests / bypass (miss added over bypass)",
        'long prompt (≈1,500 tokens) miss: added p50 / plugin CPU',
        '+ retrieval + semantic cache, miss: p50 over the lean chain ≤ their embeddings and searches + 1 ms',
        'transport floor, miss: added p50 / plugin CPU / req/s c=16 / exchanges / Redis round trips',
      ],
      rows,
    ),
    '',
    `Every target held in ${held} of ${rounds} rounds; each target: ${names
      .map((n, i) => `${n} ${heldPer[i] ?? 0}/${rounds}`)
      .join(', ')}.`,
  ].join('\n');
  console.log(body);
  writeSection('chain-targets', body);
}

/**
 * Two builds of the chain side by side on the real Kong: `other` (a checkout of this repository,
 * built: its dist/ and its kong-runner) as A, this one as B, the same kong.yml (this one's,
 * lean), one process each, measured together (`measurePaired`).
 */
async function chainAB(upstreamUrl: string, other: string): Promise<void> {
  if (!locateKong()) throw new Error('BENCH_CHAIN_AB needs the real Kong');
  const otherRoot = path.resolve(other);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const otherRunner = require(path.join(otherRoot, 'kong-runner', 'index')) as {
    startKong: typeof startKong;
  };
  const shapes = (process.env.BENCH_AB_SHAPES ?? 'miss,hit,stream').split(',') as Shape[];
  const rounds = Number(process.env.BENCH_QUICK_ROUNDS ?? 2);
  const rows: Array<Array<string | number>> = [];
  for (let round = 1; round <= rounds; round++) {
    // BENCH_AB_FULL=1: kong.yml's whole chain (retrieval and the semantic cache: Milvus needed).
    const configB = chainConfig(upstreamUrl, true, process.env.BENCH_AB_FULL !== '1');
    const portsA = await withMetricsPorts(configB);
    const configA = JSON.parse(JSON.stringify(configB)) as Declarative;
    const portsB = await withMetricsPorts(configB);
    const distA = path.join(otherRoot, 'dist', 'pluginservers');
    const used = new Set((configA.plugins ?? []).map((p) => p.name));
    const serversA = Object.fromEntries(
      readdirSync(distA)
        .filter((n) => used.has(n))
        .map((n) => [n, path.join(distA, n)]),
    );
    const a = await otherRunner.startKong({
      config: configA,
      pluginServers: serversA,
      env: PLUGIN_ENV,
      pluginServerMode: 'chain',
      workers: 1,
      label: 'bench-ab-a',
    });
    let b: KongGateway | undefined;
    try {
      await warmUp(a);
      b = (await start('kong', configB, 'chain')) as KongGateway;
      const pidsOf = (g: KongGateway, c: Declarative) => [
        ...new Set(Object.keys(serversFor(c)).map((n) => g.pluginServerInfo(n).pid)),
      ];
      for (const shape of shapes) {
        const [ma, mb] = (await measurePaired(
          [
            { gw: a, shape, pids: pidsOf(a, configA), metricsPorts: portsA },
            { gw: b, shape, pids: pidsOf(b, configB), metricsPorts: portsB },
          ],
          false,
        )) as [Measured, Measured];
        for (const [label, m] of [
          ['A', ma],
          ['B', mb],
        ] as const) {
          rows.push([
            round,
            shape,
            label,
            f(m.p50),
            f(m.ttfbP50),
            f(m.pluginCpu),
            f(m.nginxCpu),
            f(m.exchanges),
          ]);
        }
      }
    } finally {
      await b?.close();
      await a.close();
    }
  }
  console.log(`A: ${otherRoot}\nB: ${ROOT}`);
  console.log(
    table(
      ['round', 'shape', 'build', 'p50', 'TTFB p50', 'plugin CPU', 'nginx CPU', 'exchanges'],
      rows,
    ),
  );
}

async function main(): Promise<void> {
  const load = os.loadavg()[0]?.toFixed(1);
  const upstream = await startMockUpstream();
  if (process.env.BENCH_CHAIN_AB) {
    try {
      await chainAB(upstream.url, process.env.BENCH_CHAIN_AB);
    } finally {
      await upstream.close();
    }
    return;
  }
  if (process.env.BENCH_CHAIN_EXCHANGES_ONLY === '1') {
    // A quick look while working on the chain: the exchange tables only, nothing written.
    try {
      const lean = await exchanges(chainConfig(upstream.url, true, true), 'chain');
      console.log(lean.totals);
      console.log(table(['shape', 'plugin', 'phase', 'exchanges', 'PDK calls'], lean.rows));
    } finally {
      await upstream.close();
    }
    return;
  }
  if (process.env.BENCH_CHAIN_KONG_QUICK === '1') {
    // The issue's targets on the real Kong, round after round (its own section).
    try {
      await kongTargets(upstream.url);
    } finally {
      await upstream.close();
    }
    return;
  }
  const kinds: Array<'kong' | 'harness'> = locateKong() ? ['kong', 'harness'] : ['harness'];
  const rows: Array<Array<string | number>> = [];
  try {
    for (const kind of kinds) {
      const gwLabel = kind === 'kong' ? 'real Kong 3.9.3' : 'harness';
      const base = await start(kind, chainConfig(upstream.url, false), 'chain');
      const baseline: Partial<Record<Shape, Measured>> = {};
      try {
        for (const shape of ['bypass', 'stream'] as Shape[]) {
          baseline[shape] = await measureShape(base, shape, [], shape === 'bypass');
        }
      } finally {
        await base.close();
      }
      const b = baseline.bypass as Measured;
      const bs = baseline.stream as Measured;
      rows.push([
        gwLabel,
        'key-auth only',
        'bypass; stream',
        f(b.p50),
        f(b.p99),
        '—',
        '—',
        '—',
        '—',
        '—',
        '—',
        f(bs.ttfbP50),
        `itself: ${f(b.nginxCpu)}; ${f(bs.nginxCpu)}`,
        f(b.rps),
        '—',
      ]);
      const setups =
        kind === 'kong' ? SETUPS : SETUPS.filter((s) => s.mode === 'chain' && !s.unbatched);
      for (const setup of setups) {
        const config = chainConfig(upstream.url, true, setup.lean);
        if (setup.unbatched) withoutBatchSnippets(config);
        const metricsPorts = await withMetricsPorts(config);
        const gw = await start(kind, config, setup.mode);
        try {
          const pids = [
            ...new Set(Object.keys(serversFor(config)).map((n) => gw.pluginServerInfo(n).pid)),
          ];
          for (const shape of SHAPES) {
            const m = await measureShape(gw, shape, pids, shape === 'miss', metricsPorts);
            const ref = shape === 'stream' ? bs : b;
            process.stdout.write(`${kind} ${setup.label} ${shape}: ${JSON.stringify(m)}\n`);
            rows.push([
              gwLabel,
              setup.label,
              shape,
              f(m.p50),
              f(m.p99),
              f(m.p50 - ref.p50),
              f(m.p99 - ref.p99),
              f(m.pluginCpu),
              f(m.busiestCpu),
              m.exchanges === undefined ? '—' : f(m.exchanges),
              f(m.redisTrips),
              shape === 'stream' ? `${f(m.ttfbP50)} (${f(m.ttfbP50 / bs.ttfbP50)}× direct)` : '—',
              f(m.nginxCpu - (shape === 'stream' ? bs.nginxCpu : b.nginxCpu)),
              m.rps === undefined ? '—' : `${f(m.rps)} (${f(m.rps / (b.rps ?? NaN))}×)`,
              Object.entries(m.statuses)
                .map(([s, n]) => `${s}×${n}`)
                .join(' '),
            ]);
          }
        } finally {
          await gw.close();
        }
      }
    }
    const lean = await exchanges(chainConfig(upstream.url, true, true), 'chain');
    const full = await exchanges(chainConfig(upstream.url, true, false), 'chain');
    const perPlugin = await exchanges(chainConfig(upstream.url, true, true), 'per-plugin');

    writeSection(
      'chain',
      [
        '## The chain on the real Kong 3.9.3, and on the harness',
        '',
        "Command: `npm run bench -- chain` (bench/chain.ts). The repo's `kong.yml`, its service",
        'pointed at the mock upstream (no added latency). "key-auth only" is the same Kong with our',
        'plugins removed; "added" is a shape\'s p50/p99 minus that baseline in the same run.',
        `${SEQUENTIAL} sequential requests per shape (c=1), then for the miss ${CONCURRENT_TOTAL}`,
        `over ${CONCURRENCY} keep-alive connections (req/s at saturation of this 2-core machine, and`,
        'its ratio to key-auth alone). Shapes: **miss** a cacheable chat request (`temperature: 0`)',
        'asked once; **hit** the same request again; **bypass** a request the cache does not take;',
        '**stream** `stream: true` (time to first byte against key-auth alone on the same stream;',
        "the mock answers at once, so the ratio is the chain's access cost against nearly nothing);",
        "**refused** another tenant over its rate limit (tenant-ratelimit's 429). **lean**: without",
        'retrieval-injector and without the semantic cache; **calls unbatched**: the same without',
        "kong.yml's PDK batch snippets (every PDK call its own exchange): the batching's A/B in one",
        'run. Plugin-server CPU is user+system time',
        'of our plugin-server processes per request (all, and the busiest one); nginx CPU is the',
        "worker's per request minus key-auth alone's. One nginx worker. Latencies in ms. Redis",
        "round trips per request: Redis's own count of reads from its clients",
        "(`total_reads_processed`) over a shape's c=1 requests, log phases included (a script is one;",
        'commands sent in one write are one).',
        `Load average at the start: ${load} (2 cores, shared with Redis, Milvus and the mock).`,
        kinds.includes('kong') ? '' : '\n**No Kong 3.9 was installed: harness only.**\n',
        table(
          [
            'gateway',
            'setup',
            'shape',
            'p50',
            'p99',
            'added p50',
            'added p99',
            'plugin CPU ms/req',
            'busiest process ms/req',
            'exchanges/req (counted by the plugin servers)',
            'Redis round trips/req',
            'TTFB p50',
            'nginx CPU ms/req over key-auth',
            'req/s c=16',
            'statuses',
          ],
          rows,
        ),
        '',
        'RPC exchanges per request, the whole chain (phase starts + PDK calls; harness count):',
        '',
        table(
          ['setup', ...SHAPES],
          [
            ['one process, lean', ...SHAPES.map((s) => lean.totals[s])],
            ['one process, + retrieval + semantic cache', ...SHAPES.map((s) => full.totals[s])],
            ['six processes, lean', ...SHAPES.map((s) => perPlugin.totals[s])],
          ],
        ),
        '',
        'Per plugin and phase (one process, lean):',
        '',
        table(['shape', 'plugin', 'phase', 'exchanges', 'PDK calls'], lean.rows),
        '',
        '### The previous run (efcd943, 2026-12-06, load 3.7)',
        '',
        'One process, lean, real Kong: plugin-server CPU per request miss 2.77 ms, hit 2.20, bypass',
        '2.80, stream 2.88, refused 1.20; nginx CPU over key-auth miss 1.44 ms; added p50 miss 7.13',
        'ms; req/s at c=16 226 (key-auth alone 894 in that run: 0.25×); stream TTFB 8.01× direct.',
        'Exchanges the same as now (miss 19, hit 13). On the request path since, only the usage',
        "reader changed (one more key, Cohere's, looked for in each chunk): the differences are",
        'mostly the machine (a quieter run, key-auth alone twice as fast).',
        '',
        '### Before: batched calls, the seat at admission, a timer per Redis call (0ee59be)',
        '',
        'One process, lean, real Kong, load 2.7: plugin-server CPU per request miss 3.21 ms, hit',
        '2.45, bypass 3.10, stream 2.52, refused 1.43; nginx CPU over key-auth miss 1.54 ms; added',
        'p50 miss 6.77 ms; req/s at c=16 191 (key-auth alone 1966 in that run: 0.10×); stream TTFB',
        '5.27 ms (8.33× direct). Exchanges (counted by the plugin servers) miss 20, hit 14, bypass',
        '20, stream 20, refused 10. Since then: the Redis deadline sweep, the log facts instead of',
        'the serializer, the seat taken by circuit-breaker (one more Redis round trip on a miss, none',
        'on a hit), the API surface (three more reads in tenant-auth, batched).',
        '',
        '### Before: the request scope without batched PDK calls (1c1fb20)',
        '',
        'One process, lean, real Kong, load 1.0: plugin-server CPU per request miss 2.96 ms, hit',
        '2.30, bypass 3.07, stream 3.03, refused 1.43; nginx CPU over key-auth miss 1.59 ms; added',
        'p50 miss 7.82 ms; req/s at c=16 0.16× key-auth alone (six processes 0.11×); stream TTFB',
        '7.62× direct. Exchanges (harness count) miss 44, hit 29, bypass 39, stream 39, refused 21',
        '(six processes 55, 37, 50, 50, 25): every PDK call one exchange, four plugins with a log',
        'phase of their own.',
        '',
        '### Before (01a553c, six processes, every request read the body again)',
        '',
        'The same benchmark then measured one shape (a bypass-like request, whole chain with',
        'retrieval and the semantic cache) at load ~10: added p50 24.61 ms, plugin-server CPU',
        '14.15 ms/request, 87 req/s at c=16 against 1453 for key-auth alone (0.06×), and 55',
        'exchanges per request (10 phase starts + 45 PDK calls; the body fetched 5 times).',
      ].join('\n'),
    );
  } finally {
    await upstream.close();
    agent.destroy();
  }
}

main()
  .finally(() => statsClient?.quit().catch(() => undefined))
  .catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
