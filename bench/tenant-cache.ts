/**
 * tenant-cache: what a hit saves. With a mock upstream that takes 200 ms, the latency of a
 * hit against a miss (p50, p99 and their ratio, measured in one run), on the real Kong 3.9.3
 * when installed and on the harness; the PDK calls of a hit and of a miss per phase (counted
 * by the harness, which sees every RPC; the same plugin code issues the same calls on Kong);
 * and the Redis round trips per lookup, from `INFO commandstats` of a private redis-server the
 * benchmark starts (so no other client's commands are counted).
 *
 * Run: `npm run bench -- tenant-cache` (or `npx tsx bench/tenant-cache.ts` after `npm run build`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { locateKong, startKong } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';
import { freePort } from '../harness/free-port';

const ROOT = path.resolve(__dirname, '..');
const MISSES = Number(process.env.BENCH_MISSES ?? 40);
const HITS = Number(process.env.BENCH_HITS ?? 300);
const UPSTREAM_MS = 200;
const MAX_SECONDS_PER_KIND = 90;

async function startRedis(dir: string): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
    ],
    { stdio: 'ignore' },
  );
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = createClient({ url, socket: { reconnectStrategy: false } });
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.close();
      return { url, child };
    } catch {
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function chat(url: string, prompt: string): Promise<{ ms: number; cache: string; id: string }> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    temperature: 0,
    messages: [{ role: 'user', content: prompt }],
  });
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/v1/chat/completions`,
      {
        method: 'POST',
        agent,
        headers: { apikey: 'bench-key', 'content-type': 'application/json' },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
          else
            resolve({
              ms: Number(process.hrtime.bigint() - t0) / 1e6,
              cache: String(res.headers['x-cache-status'] ?? ''),
              id: String(res.headers['x-kong-request-id'] ?? ''),
            });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function commandCalls(url: string): Promise<Map<string, number>> {
  const c = createClient({ url });
  await c.connect();
  const info = await c.info('commandstats');
  await c.close();
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
    out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  const d = new Map<string, number>();
  for (const [k, v] of after) {
    const n = v - (before.get(k) ?? 0);
    // INFO and HELLO are the measuring client's own (it connects for each reading).
    if (n > 0 && k !== 'info' && k !== 'hello') d.set(k, n);
  }
  return d;
}

interface Measured {
  missMs: number[];
  hitMs: number[];
  hitCmds: Map<string, number>;
  missCmds: Map<string, number>;
  pdk: Record<'hit' | 'miss', { access: string; log: string }> | null;
}

function pdkSummary(gw: Gateway, id: string, phase: string): string {
  const s = gw.requestStats(id)?.plugins['tenant-cache']?.[phase];
  if (!s) return '—';
  const n = Object.values(s.pdkCalls).reduce((a, b) => a + b, 0);
  return `${n} (${Object.entries(s.pdkCalls)
    .map(([k, v]) => `${k.replace(/^kong\./, '')}${v > 1 ? `×${v}` : ''}`)
    .join(', ')})`;
}

async function measure(
  kind: 'kong' | 'harness',
  redisUrl: string,
  keyFile: string,
): Promise<Measured> {
  const upstream = await startMockUpstream({ latencyMs: UPSTREAM_MS });
  const config = {
    _format_version: '3.0',
    services: [
      {
        name: 'llm',
        url: upstream.url,
        routes: [{ name: 'ai', paths: ['/v1'], strip_path: false }],
      },
    ],
    plugins: [
      { name: 'key-auth', route: 'ai', config: { hide_credentials: true } },
      {
        name: 'tenant-auth',
        route: 'ai',
        config: { plans: { pro: { tools_allowed: ['search'], persona: 'You help.', weight: 1 } } },
      },
      {
        name: 'tenant-cache',
        route: 'ai',
        config: {
          redis: { url: redisUrl, key_namespace: `bench-${randomBytes(3).toString('hex')}` },
          master_key_env: 'KTA_BENCH_UNSET',
          master_key_file: keyFile,
          ttl_seconds: 600,
        },
      },
    ],
    consumers: [
      {
        username: 'b',
        custom_id: 'acme',
        tags: ['plan:pro'],
        keyauth_credentials: [{ key: 'bench-key' }],
      },
    ],
  };
  const opts = {
    config,
    pluginServers: {
      'tenant-auth': path.join(ROOT, 'dist', 'pluginservers', 'tenant-auth'),
      'tenant-cache': path.join(ROOT, 'dist', 'pluginservers', 'tenant-cache'),
    },
  };
  const gw: Gateway =
    kind === 'kong'
      ? await startKong({ ...opts, label: 'bench-tenant-cache' })
      : await startGateway(opts);
  const stop = Date.now() + MAX_SECONDS_PER_KIND * 1000;
  try {
    // Warm up: plugin servers, Redis connection, JIT.
    for (let i = 0; i < 5; i++) await chat(gw.url, `warm ${i}`);
    const hot = `hot ${randomBytes(4).toString('hex')}`;
    await chat(gw.url, hot);
    for (let i = 0; i < 50 && (await chat(gw.url, hot)).cache !== 'HIT'; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const missMs: number[] = [];
    const hitMs: number[] = [];
    let pdk: Measured['pdk'] = null;
    const c0 = await commandCalls(redisUrl);
    let missId = '';
    for (let i = 0; i < MISSES && Date.now() < stop; i++) {
      const r = await chat(gw.url, `miss ${i} ${randomBytes(4).toString('hex')}`);
      if (r.cache !== 'MISS') throw new Error(`expected a MISS, got ${r.cache}`);
      missMs.push(r.ms);
      missId = r.id;
    }
    await new Promise((r) => setTimeout(r, 300)); // let the last stores land
    const c1 = await commandCalls(redisUrl);
    let hitId = '';
    for (let i = 0; i < HITS && Date.now() < stop; i++) {
      const r = await chat(gw.url, hot);
      if (r.cache !== 'HIT') throw new Error(`expected a HIT, got ${r.cache}`);
      hitMs.push(r.ms);
      hitId = r.id;
    }
    const c2 = await commandCalls(redisUrl);
    if (kind === 'harness') {
      pdk = {
        miss: { access: pdkSummary(gw, missId, 'access'), log: pdkSummary(gw, missId, 'log') },
        hit: { access: pdkSummary(gw, hitId, 'access'), log: pdkSummary(gw, hitId, 'log') },
      };
    }
    const perRequest = (d: Map<string, number>, n: number) =>
      new Map([...d].map(([k, v]) => [k, v / Math.max(1, n)]));
    return {
      missMs: missMs.sort((a, b) => a - b),
      hitMs: hitMs.sort((a, b) => a - b),
      missCmds: perRequest(delta(c1, c0), missMs.length),
      hitCmds: perRequest(delta(c2, c1), hitMs.length),
      pdk,
    };
  } finally {
    await gw.close();
    await upstream.close();
  }
}

const fmtCmds = (m: Map<string, number>) =>
  [...m].map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(2)}`).join(', ') || '—';

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-cache-'));
  const keyFile = path.join(dir, 'master.key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o644 });
  const redis = await startRedis(dir);
  const kinds: Array<'kong' | 'harness'> = locateKong() ? ['kong', 'harness'] : ['harness'];
  const rows: Array<Array<string | number>> = [];
  const rtRows: Array<Array<string | number>> = [];
  let pdk: Measured['pdk'] = null;
  try {
    for (const kind of kinds) {
      const m = await measure(kind, redis.url, keyFile);
      const f = (n: number) => n.toFixed(2);
      const missP50 = percentile(m.missMs, 50);
      const hitP50 = percentile(m.hitMs, 50);
      rows.push([
        kind === 'kong' ? 'Kong 3.9.3' : 'harness',
        `${m.missMs.length} / ${m.hitMs.length}`,
        f(missP50),
        f(percentile(m.missMs, 99)),
        f(hitP50),
        f(percentile(m.hitMs, 99)),
        (hitP50 / missP50).toFixed(3),
      ]);
      rtRows.push([
        kind === 'kong' ? 'Kong 3.9.3' : 'harness',
        fmtCmds(m.hitCmds),
        fmtCmds(m.missCmds),
      ]);
      pdk ??= m.pdk;
    }
  } finally {
    redis.child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }

  const body = `## tenant-cache: hit vs miss with a 200 ms upstream

Command: \`npm run bench -- tenant-cache\` (bench/tenant-cache.ts). key-auth + tenant-auth +
tenant-cache, mock upstream answering after ${UPSTREAM_MS} ms; up to ${MISSES} cacheable misses (each a new
prompt, temperature 0) then up to ${HITS} hits of one prompt, sequential, one keep-alive connection.
"hit ÷ miss" is the ratio of the p50 latencies measured in the same run.

${table(['gateway', 'misses / hits', 'miss p50 ms', 'miss p99 ms', 'hit p50 ms', 'hit p99 ms', 'hit ÷ miss (p50)'], rows)}

PDK calls of tenant-cache per request (harness counts; each is one round trip to Kong):

${table(
  ['request', 'access', 'log'],
  pdk
    ? [
        ['hit', pdk.hit.access, pdk.hit.log],
        ['cacheable miss', pdk.miss.access, pdk.miss.log],
      ]
    : [['—', '—', '—']],
)}

Redis commands per request (\`INFO commandstats\` of a private redis-server; each command is one
round trip): a lookup is one \`MGET\` of the two generations and the entry; a miss adds one
\`SET\` from log.

${table(['gateway', 'per hit', 'per miss'], rtRows)}`;
  writeSection('tenant-cache', body);
  process.stdout.write(`${body}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
