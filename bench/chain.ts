/**
 * The chain on the real Kong 3.9.3, with the harness beside it: what our plugins add over a
 * Kong that runs only key-auth, on the repo's kong.yml (its upstream pointed at a mock that
 * answers at once). Per gateway: latency p50/p99 at concurrency 1 and 16, requests/s at
 * concurrency 16 (saturation on this 2-core machine), plugin-server CPU per request, and the
 * PDK round trips per plugin and phase (counted by the harness, which sees every RPC; the same
 * plugin-server code issues the same calls on Kong).
 *
 * Run: `npm run bench` (or `npx tsx bench/chain.ts` after `npm run build`). Without a Kong
 * installed it measures the harness only and says so.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parse } from 'yaml';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { locateKong, startKong } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const SEQUENTIAL = Number(process.env.BENCH_REQUESTS ?? 400);
const CONCURRENT_TOTAL = Number(process.env.BENCH_CONCURRENT_REQUESTS ?? 2000);
const CONCURRENCY = 16;
const MAX_SECONDS_PER_RUN = 60;
const BUNDLED = new Set(['key-auth', 'post-function', 'pre-function', 'rate-limiting']);

type Declarative = {
  services?: Array<{ url?: string }>;
  plugins?: Array<{ name: string; config?: Record<string, unknown> }>;
};

function chainConfig(upstreamUrl: string, ours: boolean): Declarative {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as Declarative;
  for (const s of doc.services ?? []) s.url = upstreamUrl;
  doc.plugins = (doc.plugins ?? []).filter((p) => ours || BUNDLED.has(p.name));
  for (const p of doc.plugins) {
    // Metrics servers off: a running `npm start` may hold the configured ports.
    if (p.config && 'metrics_port' in p.config) p.config.metrics_port = 0;
    // Every address kong.yml gives the local mock (:9000) goes to this run's mock.
    const mock = new URL(upstreamUrl);
    if (p.name === 'retrieval-injector' && p.config) {
      const embeddings = (p.config.embeddings ?? {}) as Record<string, unknown>;
      p.config.embeddings = { ...embeddings, url: `${upstreamUrl}/v1/embeddings` };
    }
    if (p.name === 'tenant-cache' && p.config) {
      const semantic = (p.config.semantic ?? {}) as Record<string, unknown>;
      const embeddings = (semantic.embeddings ?? {}) as Record<string, unknown>;
      p.config.semantic = {
        ...semantic,
        embeddings: { ...embeddings, url: `${upstreamUrl}/v1/embeddings` },
      };
    }
    if (p.name === 'circuit-breaker' && p.config) {
      const upstreams = (p.config.upstreams ?? {}) as Record<string, Record<string, unknown>>;
      for (const u of Object.values(upstreams)) {
        u.host = mock.hostname;
        u.port = Number(mock.port);
      }
    }
    // The benchmark measures the chain's cost, not the demo plan's limits: lift them.
    if (p.name === 'tenant-ratelimit' && p.config) {
      const lifted = {
        requests_per_minute: 1_000_000,
        request_burst: 100_000,
        tokens_per_minute: 1_000_000_000,
        max_concurrent: 64,
      };
      p.config.default_limits = lifted;
      p.config.plans = { free: lifted, pro: lifted };
      p.config.tenants = {};
    }
  }
  return doc;
}

const PLUGIN_ENV = {
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  MILVUS_ADDRESS: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
  KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex'),
  KTA_CACHE_MASTER_KEY: randomBytes(32).toString('hex'),
};

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
const BODY = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  max_tokens: 16,
});

function chat(url: string): Promise<{ ms: number; status: number; id: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/chat/completions`,
      {
        method: 'POST',
        agent,
        headers: {
          apikey: 'acme-demo-key',
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(BODY),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            ms: Number(process.hrtime.bigint() - t0) / 1e6,
            status: res.statusCode ?? 0,
            id: String(res.headers['x-kong-request-id'] ?? ''),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(BODY);
  });
}

/** utime + stime of a process, in ms (0 when it is gone). */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

interface Run {
  p50c1: number;
  p99c1: number;
  p50c16: number;
  p99c16: number;
  rps: number;
  cpuPerRequestMs: number;
  errors: number;
}

async function measure(url: string, pids: number[]): Promise<Run> {
  for (let i = 0; i < 50; i++) await chat(url);
  let errors = 0;
  const deadline = Date.now() + MAX_SECONDS_PER_RUN * 1000;
  const c1: number[] = [];
  const cpu0 = pids.reduce((a, p) => a + cpuMs(p), 0);
  for (let i = 0; i < SEQUENTIAL && Date.now() < deadline; i++) {
    const r = await chat(url);
    if (r.status !== 200) {
      errors++;
      if (errors === 1) process.stdout.write(`first non-200: ${r.status}\n`);
    }
    c1.push(r.ms);
  }
  const c16: number[] = [];
  let sent = 0;
  const t0 = Date.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (sent < CONCURRENT_TOTAL && Date.now() < deadline + MAX_SECONDS_PER_RUN * 1000) {
        sent++;
        const r = await chat(url);
        if (r.status !== 200) errors++;
        c16.push(r.ms);
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  const cpu1 = pids.reduce((a, p) => a + cpuMs(p), 0);
  c1.sort((a, b) => a - b);
  c16.sort((a, b) => a - b);
  return {
    p50c1: percentile(c1, 50),
    p99c1: percentile(c1, 99),
    p50c16: percentile(c16, 50),
    p99c16: percentile(c16, 99),
    rps: c16.length / seconds,
    cpuPerRequestMs: pids.length ? (cpu1 - cpu0) / (c1.length + c16.length) : 0,
    errors,
  };
}

type Kind = 'kong' | 'harness';

async function start(
  kind: Kind,
  config: Declarative,
  servers: Record<string, string>,
): Promise<Gateway> {
  const opts = {
    config,
    pluginServers: servers,
    env: PLUGIN_ENV,
  };
  return kind === 'kong'
    ? startKong({ ...opts, workers: 1, label: 'bench-chain' })
    : startGateway(opts);
}

async function main(): Promise<void> {
  const dist = path.join(ROOT, 'dist', 'pluginservers');
  const upstream = await startMockUpstream();
  const full = chainConfig(upstream.url, true);
  const used = new Set((full.plugins ?? []).map((p) => p.name));
  const servers = Object.fromEntries(
    readdirSync(dist)
      .filter((n) => used.has(n))
      .map((n) => [n, path.join(dist, n)]),
  );
  const kinds: Kind[] = locateKong() ? ['kong', 'harness'] : ['harness'];
  const rows: Array<Array<string | number>> = [];
  const f = (n: number) => n.toFixed(2);
  for (const kind of kinds) {
    const results: Record<'base' | 'chain', Run> = {} as Record<'base' | 'chain', Run>;
    for (const which of ['base', 'chain'] as const) {
      const gw = await start(
        kind,
        which === 'base' ? chainConfig(upstream.url, false) : full,
        which === 'base' ? {} : servers,
      );
      try {
        const pids =
          which === 'base' ? [] : Object.keys(servers).map((n) => gw.pluginServerInfo(n).pid);
        results[which] = await measure(gw.url, pids);
      } finally {
        await gw.close();
      }
      process.stdout.write(`${kind} ${which}: ${JSON.stringify(results[which])}\n`);
    }
    const label = kind === 'kong' ? 'real Kong 3.9.3' : 'harness';
    for (const which of ['base', 'chain'] as const) {
      const r = results[which];
      const b = results.base;
      rows.push([
        label,
        which === 'base' ? 'key-auth only' : `key-auth + ${Object.keys(servers).join(' + ')}`,
        f(r.p50c1),
        f(r.p99c1),
        which === 'base' ? '—' : f(r.p50c1 - b.p50c1),
        which === 'base' ? '—' : f(r.p99c1 - b.p99c1),
        f(r.p50c16),
        f(r.p99c16),
        Math.round(r.rps),
        which === 'base' ? '—' : f(r.cpuPerRequestMs),
        r.errors,
      ]);
    }
  }

  // PDK round trips per plugin and phase: one chat request through the harness, counted.
  const probe = await startGateway({
    config: full,
    pluginServers: servers,
    env: PLUGIN_ENV,
  });
  const pdkRows: Array<Array<string | number>> = [];
  try {
    for (let i = 0; i < 5; i++) await chat(probe.url);
    const r = await chat(probe.url);
    await probe.logDone(r.id);
    const stats = probe.requestStats(r.id);
    for (const [plugin, phases] of Object.entries(stats?.plugins ?? {})) {
      for (const [phase, s] of Object.entries(phases)) {
        const calls = Object.values(s.pdkCalls).reduce((a, b) => a + b, 0);
        pdkRows.push([
          plugin,
          phase,
          calls,
          s.roundTrips,
          Object.keys(s.pdkCalls).sort().join(', '),
        ]);
      }
    }
  } finally {
    await probe.close();
    await upstream.close();
    agent.destroy();
  }

  writeSection(
    'chain',
    [
      '## The chain on the real Kong 3.9.3, and on the harness',
      '',
      "Command: `npm run bench` (bench/chain.ts). The repo's `kong.yml`, its service pointed at",
      'the mock upstream (no added latency); one tenant (`acme`) sending a chat request. "key-auth',
      'only" is the same Kong with our plugins removed; "added" is the chain\'s p50/p99 minus that',
      `baseline in the same run. ${SEQUENTIAL} sequential requests (c=1), then ${CONCURRENT_TOTAL}`,
      `over ${CONCURRENCY} keep-alive connections (c=16, which saturates this 2-core machine: its`,
      'requests/s is the throughput at saturation). Plugin-server CPU is user+system time of our',
      'plugin-server processes per request. One nginx worker on Kong. Latencies in ms.',
      kinds.includes('kong') ? '' : '\n**No Kong 3.9 was installed: harness only.**\n',
      table(
        [
          'gateway',
          'plugins',
          'c=1 p50',
          'c=1 p99',
          'added p50',
          'added p99',
          'c=16 p50',
          'c=16 p99',
          'req/s c=16',
          'plugin-server CPU ms/req',
          'non-200',
        ],
        rows,
      ),
      '',
      'PDK calls per plugin and phase for that request (harness count; each call is one round trip',
      'to Kong, and each phase opens with one more exchange):',
      '',
      table(['plugin', 'phase', 'PDK calls', 'RPC exchanges', 'calls'], pdkRows),
    ].join('\n'),
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
