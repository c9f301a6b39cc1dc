/**
 * tenant-cache's semantic cache: what a near-duplicate hit costs and saves. With a mock
 * upstream that takes 200 ms, the latency of a cacheable miss (exact lookup, then a semantic
 * lookup that finds nothing close enough), of a semantic hit (exact miss, embedding, Milvus
 * search, decrypt) and of an exact hit, measured in one run on the real Kong 3.9.3 when
 * installed and on the harness; against the shared Redis (random key namespace) and Milvus
 * (a random collection, dropped after), embeddings from the mock upstream.
 *
 * Run: `npm run bench -- tenant-cache-semantic` (or `npx tsx bench/tenant-cache-semantic.ts`
 * after `npm run build`, with Redis and Milvus running).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { createMilvus } from '../lib/milvus/client';
import { locateKong, startKong } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';
import { percentile, table, writeSection } from './report';

const ROOT = path.resolve(__dirname, '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const MILVUS_ADDRESS = process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530';
const QUESTIONS = Number(process.env.BENCH_QUESTIONS ?? 20);
const HITS = Number(process.env.BENCH_HITS ?? 100);
const UPSTREAM_MS = 200;
const MAX_SECONDS_PER_KIND = 90;
const DIM = 256;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function chat(url: string, prompt: string): Promise<{ ms: number; cache: string; match: string }> {
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
              match: String(res.headers['x-cache-match'] ?? 'exact'),
            });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Each question has its own random words; its near-duplicate differs in case and punctuation. */
function questions(n: number): Array<{ q: string; near: string }> {
  return Array.from({ length: n }, () => {
    const words = Array.from({ length: 5 }, () => `w${randomBytes(3).toString('hex')}`).join(' ');
    return {
      q: `what does the contract say about ${words}`,
      near: `What does the contract say about ${words.toUpperCase()}?`,
    };
  });
}

interface Measured {
  missMs: number[];
  semanticMs: number[];
  exactMs: number[];
}

async function measure(kind: 'kong' | 'harness', keyFile: string): Promise<Measured> {
  const upstream = await startMockUpstream({ latencyMs: UPSTREAM_MS });
  const namespace = `bsem-${randomBytes(3).toString('hex')}`;
  const collection = `kta_bench_sem_${randomBytes(4).toString('hex')}`;
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
      { name: 'tenant-auth', route: 'ai', config: { plans: { pro: { weight: 1 } } } },
      {
        name: 'tenant-cache',
        route: 'ai',
        config: {
          redis: { url: REDIS_URL, key_namespace: namespace },
          master_key_env: 'KTA_BENCH_UNSET',
          master_key_file: keyFile,
          ttl_seconds: 600,
          plans: { pro: { semantic_enabled: true, similarity_threshold: 0.9 } },
          semantic: {
            milvus: { address: MILVUS_ADDRESS, collection, consistency_level: 'Bounded' },
            embeddings: { url: `${upstream.url}/v1/embeddings`, dimensions: DIM },
            lookup_timeout_ms: 5000,
            store_timeout_ms: 5000,
          },
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
      ? await startKong({ ...opts, label: 'bench-tenant-cache-semantic' })
      : await startGateway(opts);
  const stop = Date.now() + MAX_SECONDS_PER_KIND * 1000;
  try {
    // Warm up: plugin servers, the Milvus collection (created on first use), JIT.
    const warm = questions(3);
    for (const w of warm) await chat(gw.url, w.q);
    await new Promise((r) => setTimeout(r, 1000));
    for (let i = 0; i < 50 && (await chat(gw.url, warm[0]!.near)).match !== 'semantic'; i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    const qs = questions(QUESTIONS);
    const missMs: number[] = [];
    for (const { q } of qs) {
      if (Date.now() > stop) break;
      const r = await chat(gw.url, q);
      if (r.cache !== 'MISS') throw new Error(`expected a MISS, got ${r.cache}`);
      missMs.push(r.ms);
    }
    await new Promise((r) => setTimeout(r, 5000)); // let the last stores land and be seen (Bounded)
    const semanticMs: number[] = [];
    const exactMs: number[] = [];
    for (let i = 0; i < HITS && Date.now() < stop; i++) {
      const { q, near } = qs[i % missMs.length]!;
      const s = await chat(gw.url, near);
      if (s.cache === 'HIT' && s.match === 'semantic') semanticMs.push(s.ms);
      const e = await chat(gw.url, q);
      if (e.cache === 'HIT' && e.match === 'exact') exactMs.push(e.ms);
    }
    const sort = (a: number[]) => a.sort((x, y) => x - y);
    return { missMs: sort(missMs), semanticMs: sort(semanticMs), exactMs: sort(exactMs) };
  } finally {
    await gw.close();
    await upstream.close();
    const milvus = await createMilvus({ address: MILVUS_ADDRESS, logLevel: 'error' });
    await milvus.dropCollection({ collection_name: collection }).catch(() => undefined);
    milvus.closeConnection();
    const redis = createClient({ url: REDIS_URL });
    await redis.connect();
    for await (const keys of redis.scanIterator({ MATCH: `${namespace}:*`, COUNT: 500 })) {
      if (keys.length > 0) await redis.del(keys);
    }
    await redis.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-sem-'));
  const keyFile = path.join(dir, 'master.key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o644 });
  const kinds: Array<'kong' | 'harness'> = locateKong() ? ['kong', 'harness'] : ['harness'];
  const rows: Array<Array<string | number>> = [];
  try {
    for (const kind of kinds) {
      const m = await measure(kind, keyFile);
      const f = (n: number) => n.toFixed(2);
      const p50 = (a: number[]) => percentile(a, 50);
      rows.push([
        kind === 'kong' ? 'Kong 3.9.3' : 'harness',
        `${m.missMs.length} / ${m.semanticMs.length} / ${m.exactMs.length}`,
        `${f(p50(m.missMs))} / ${f(percentile(m.missMs, 99))}`,
        `${f(p50(m.semanticMs))} / ${f(percentile(m.semanticMs, 99))}`,
        `${f(p50(m.exactMs))} / ${f(percentile(m.exactMs, 99))}`,
        (p50(m.semanticMs) / p50(m.missMs)).toFixed(3),
        (p50(m.semanticMs) / p50(m.exactMs)).toFixed(2),
      ]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const body = `## tenant-cache: semantic hit vs miss with a 200 ms upstream

Command: \`npm run bench -- tenant-cache-semantic\` (bench/tenant-cache-semantic.ts).
key-auth + tenant-auth + tenant-cache with the semantic cache on (threshold 0.9, Milvus
\`Bounded\` consistency (the default), ${DIM}-dimension embeddings from the mock upstream's endpoint), mock
upstream answering after ${UPSTREAM_MS} ms. ${QUESTIONS} new questions (misses: exact lookup, semantic
lookup finding nothing close, upstream, both stores in log), then up to ${HITS} rounds of one
near-duplicate (a semantic hit: exact miss, the question's embedding from the tenant's Redis
embedding cache after its first time, one Milvus search, decrypt) and the original question
(an exact hit). Sequential, one keep-alive connection; ratios of p50s within one run. The
mock's ${UPSTREAM_MS} ms apply to its embeddings endpoint too: a miss pays one uncached embedding
(~${UPSTREAM_MS} ms here) before the upstream call; with a real endpoint that cost is the
provider's embedding latency, bounded by \`semantic.lookup_timeout_ms\`.

${table(
  [
    'gateway',
    'misses / semantic / exact hits',
    'miss p50 / p99 ms',
    'semantic hit p50 / p99 ms',
    'exact hit p50 / p99 ms',
    'semantic ÷ miss (p50)',
    'semantic ÷ exact (p50)',
  ],
  rows,
)}

PDK calls: the same as the exact cache's (see the tenant-cache section): a semantic hit is 8
in access and 1 in log, like an exact hit; it adds no PDK call, only the embedding and the
Milvus search outside Kong.`;
  writeSection('tenant-cache-semantic', body);
  process.stdout.write(`${body}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
