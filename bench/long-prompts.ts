/**
 * Long prompts beside short ones in the co-hosted chain, on the real Kong 3.9.3.
 *
 * Every plugin of every tenant runs on the chain process's one thread, and a request's token
 * estimate grows with its prompt (tokenize.ts), and it is made before the tenant's limits are
 * checked (tokens per minute need it). One tenant (globex, over one of its limits) sends prompts
 * of about 15,000 tokens of prose at FLOOD_RATE a second (open loop: each is sent on time, its
 * answer awaited by none of the others, at most FLOOD_CLIENTS at once); another (acme)
 * sends short chat misses one at a time. Two floods, one after the other:
 * - over its tokens per minute: every request is refused (429) after its estimate, which must
 *   be made each time (a smaller request could fit);
 * - over its requests per minute (one a minute): Redis refuses the first, and tenant-ratelimit
 *   answers the next ones from memory until the bucket holds a request again
 *   (plugins/tenant-ratelimit/refusal-memo.ts), without an estimate.
 * The flood never reaches the upstream: the mock (in this process) answers only the short
 * requests (and the tokens flood's first request, which its full bucket admits). For each flood
 * two Kongs of this build run side by side, one counting long prompts on a thread of their own
 * (KTA_TOKENIZER_THREADS=1, the default: lib/tokens/count-pool.ts), one counting every prompt
 * inline (=0), and the short requests go to each in turn in blocks (as bench/chain.ts
 * `measurePaired`): first with no flood, then under it.
 *
 * Command: `npm run bench -- long-prompts` (writes its section of docs/benchmarks.md).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { locateKong, startKong, type KongGateway } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';
import { chainConfig, serversFor, type Declarative } from './lib/chain-config';
import { sendChat } from './lib/chat-client';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const SHORT_REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const BLOCK = 25;
/** Long prompts a second globex sends to each Kong, whatever the answers' pace. */
const FLOOD_RATE = Number(process.env.BENCH_FLOOD_RATE ?? 20);
/** Most flood requests in flight to one Kong (past it, a send is skipped and counted). */
const FLOOD_CLIENTS = 16;
/** Words of prose in a long prompt: about 15,000 tokens. */
const FLOOD_WORDS = 12_000;

const PROSE = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8')
  .split(/\s+/)
  .filter((w) => w.length > 0);

function longPrompt(): string {
  const words: string[] = [];
  while (words.length < FLOOD_WORDS) {
    const from = Math.floor(Math.random() * PROSE.length);
    words.push(...PROSE.slice(from, from + 400));
  }
  return `${words.slice(0, FLOOD_WORDS).join(' ')} ${randomBytes(4).toString('hex')}`;
}

const chat = (content: string) =>
  JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 16,
    temperature: 0,
    messages: [{ role: 'user', content }],
  });

/** The short request: words of its own each time, so every one is a cache miss. */
const shortBody = () =>
  chat(`${Array.from({ length: 8 }, () => randomBytes(4).toString('hex')).join(' ')}?`);

/** utime + stime of a process, threads included, in ms. */
function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

interface Side {
  label: string;
  gw: KongGateway;
  pid: number;
  agent: http.Agent;
  ms: number[];
  statuses: Record<number, number>;
  flood: { done: number; skipped: number; statuses: Record<number, number>; ms: number[] };
}

/** The short requests, BLOCK to each side in turn, until each has `n`. */
async function shortRequests(sides: Side[], n: number): Promise<void> {
  for (const s of sides) {
    s.ms = [];
    s.statuses = {};
  }
  for (let b = 0; sides.some((s) => s.ms.length < n); b++) {
    for (const s of b % 2 === 0 ? sides : [...sides].reverse()) {
      for (let i = 0; i < BLOCK && s.ms.length < n; i++) {
        const r = await sendChat(s.gw.url, 'acme-demo-key', shortBody(), s.agent);
        s.ms.push(r.ms);
        s.statuses[r.status] = (s.statuses[r.status] ?? 0) + 1;
      }
    }
  }
}

/**
 * Long prompts to `s` at FLOOD_RATE a second until `stop()`: open loop, as a tenant's batch job
 * sends them, so a cheaper refusal does not make the flood faster (a closed loop would keep
 * the machine busy whatever each refusal costs). A send due while FLOOD_CLIENTS are still in
 * flight is skipped and counted.
 */
async function flood(s: Side, stop: () => boolean): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: FLOOD_CLIENTS });
  const bodies = Array.from({ length: 8 }, () => chat(longPrompt()));
  const inFlight = new Set<Promise<void>>();
  const start = Date.now();
  for (let k = 0; !stop(); k++) {
    const due = start + (k * 1000) / FLOOD_RATE;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (inFlight.size >= FLOOD_CLIENTS) {
      s.flood.skipped++;
      continue;
    }
    const body = bodies[k % bodies.length] as string;
    const sent: Promise<void> = sendChat(s.gw.url, 'globex-demo-key', body, agent).then((r) => {
      s.flood.done++;
      s.flood.ms.push(r.ms);
      s.flood.statuses[r.status] = (s.flood.statuses[r.status] ?? 0) + 1;
      inFlight.delete(sent);
    });
    inFlight.add(sent);
  }
  await Promise.all(inFlight);
  agent.destroy();
}

const sorted = (v: number[]) => [...v].sort((a, b) => a - b);
const p = (v: number[], q: number) => percentile(sorted(v), q);

const f = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—');
const statusText = (st: Record<number, number>) =>
  Object.entries(st)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');

/** What globex's flood is over. */
type Flood = 'tokens' | 'requests';

const FLOODS: Record<Flood, { text: string; limits: Record<string, number> }> = {
  tokens: {
    text: 'tokens per minute (1,000): refused after each estimate',
    limits: { tokens_per_minute: 1000, token_burst: 1000 },
  },
  requests: {
    text: 'requests per minute (1): refused from memory after the first',
    limits: { requests_per_minute: 1, request_burst: 1 },
  },
};

/** kong.yml's lean chain with globex over `flood`'s limit and nothing else. */
function configFor(upstreamUrl: string, flood: Flood): Declarative {
  const doc = chainConfig(upstreamUrl, true, true);
  for (const p of doc.plugins ?? []) {
    if (p.name !== 'tenant-ratelimit' || !p.config) continue;
    const lifted = p.config.default_limits as Record<string, number>;
    p.config.tenants = { globex: { ...lifted, ...FLOODS[flood].limits } };
  }
  return doc;
}

async function runFlood(upstreamUrl: string, over: Flood): Promise<string[][]> {
  const load = os.loadavg()[0] ?? NaN;
  const sides: Side[] = [];
  try {
    for (const threads of ['1', '0']) {
      const doc = configFor(upstreamUrl, over);
      const gw = await startKong({
        config: doc,
        pluginServers: serversFor(doc),
        env: {
          REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
          KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex'),
          KTA_CACHE_MASTER_KEY: randomBytes(32).toString('hex'),
          KTA_TOKENIZER_THREADS: threads,
        },
        pluginServerMode: 'chain',
        workers: 1,
        label: `bench-long-prompts-${over}-${threads}`,
      });
      const pid = gw.pluginServerInfo('tenant-auth').pid;
      sides.push({
        label: threads === '1' ? 'long prompts on a thread of their own (default)' : 'inline',
        gw,
        pid,
        agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
        ms: [],
        statuses: {},
        flood: { done: 0, skipped: 0, statuses: {}, ms: [] },
      });
    }
    // Warm both: encodings, connections, the counting thread.
    await shortRequests(sides, 30);
    for (const s of sides) await sendChat(s.gw.url, 'globex-demo-key', chat(longPrompt()), s.agent);

    await shortRequests(sides, SHORT_REQUESTS);
    const alone = sides.map((s) => ({ p50: p(s.ms, 50), p99: p(s.ms, 99) }));

    let stopped = false;
    const t0 = Date.now();
    const cpu0 = sides.map((s) => cpuMs(s.pid));
    const floods = sides.map((s) => flood(s, () => stopped));
    await new Promise((r) => setTimeout(r, 1000));
    await shortRequests(sides, SHORT_REQUESTS);
    stopped = true;
    await Promise.all(floods);
    const seconds = (Date.now() - t0) / 1000;
    return sides.map((s, i) => [
      `${FLOODS[over].text} (load ${load.toFixed(1)})`,
      s.label,
      `${f(alone[i]?.p50 ?? NaN)} / ${f(alone[i]?.p99 ?? NaN)}`,
      `${f(p(s.ms, 50))} / ${f(p(s.ms, 99))} / ${f(Math.max(...s.ms))}`,
      statusText(s.statuses),
      `${f(s.flood.done / seconds)} (${statusText(s.flood.statuses)}${s.flood.skipped ? `, ${s.flood.skipped} skipped` : ''})`,
      f(p(s.flood.ms, 50)),
      f((cpuMs(s.pid) - (cpu0[i] ?? 0)) / 1000 / seconds),
    ]);
  } finally {
    for (const s of sides) {
      s.agent.destroy();
      await s.gw.close();
    }
  }
}

async function main(): Promise<void> {
  if (!locateKong()) {
    console.log('long-prompts: needs the real Kong (scripts/services/kong.sh install); skipped.');
    return;
  }
  const upstream = await startMockUpstream();
  const rows: string[][] = [];
  try {
    for (const flood of ['tokens', 'requests'] as const)
      rows.push(...(await runFlood(upstream.url, flood)));
    const body = [
      '## Long prompts beside short ones (real Kong 3.9.3, one chain process)',
      '',
      'Command: `npm run bench -- long-prompts` (bench/long-prompts.ts). Two Kongs of this build',
      "side by side, kong.yml's chain (one process, lean); one counts prompts longer than 4,096",
      'characters on a thread of their own (`KTA_TOKENIZER_THREADS=1`, the default,',
      'lib/tokens/count-pool.ts), the other counts every prompt on the thread that serves every',
      `request (\`=0\`). acme sends ${SHORT_REQUESTS} short chat misses one at a time, in blocks of`,
      `${BLOCK} to each Kong in turn: first alone, then while globex, over one of its limits, sends`,
      `prompts of about 15,000 tokens of prose to each Kong, ${FLOOD_RATE} a second whatever the answers'`,
      `pace (open loop; a send due while ${FLOOD_CLIENTS} are in flight is skipped and counted).`,
      'Over its tokens per minute, each is refused (429) after its estimate, which',
      "tenant-ratelimit makes before it checks the tenant's limits (tokens per minute need it).",
      'Over its requests per minute, Redis refuses the first and tenant-ratelimit the next ones',
      'from memory, without an estimate, until the bucket holds a request again',
      '(plugins/tenant-ratelimit/refusal-memo.ts; an entry lasts 5 s at most, then Redis is asked',
      'again). Short requests: p50 / p99 (/ max) in ms; the flood: long requests answered per',
      'second and their p50; plugin-server CPU in cores (its threads included). Load average at',
      "each flood's start in its first column (2 cores, shared with both Kongs, Redis and this",
      'process).',
      '',
      table(
        [
          'globex over',
          'counting',
          'short, alone: p50 / p99',
          'short, under the flood: p50 / p99 / max',
          'short statuses',
          'flood: long requests/s (statuses)',
          'flood p50',
          'plugin server cores',
        ],
        rows,
      ),
    ].join('\n');
    console.log(body);
    writeSection('long-prompts', body);
  } finally {
    await upstream.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
