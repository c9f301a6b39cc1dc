/**
 * token-meter: the claims, measured. On the real Kong 3.9.3 (when installed) and on the
 * harness, with the real Redis and the mock upstream:
 *   1. 200 concurrent requests against a budget with room for about 50 worst cases:
 *      overshoot (settled − cap) must be 0; how many were served, clamped, refused;
 *   2. 100 streamed + 100 non-streamed requests: the ledger total equals the usage the mock
 *      reported, exactly;
 *   3. time to first byte of a streamed answer through the chain ÷ direct to the mock;
 *   4. token-meter's PDK calls per phase (harness counts) and Redis round trips.
 * Run: `npm run bench -- token-meter` (or `npx tsx bench/token-meter.ts` after a build, with
 * Redis at REDIS_URL).
 */
import http from 'node:http';
import { createClient } from 'redis';
import { locateKong } from '../kong-runner/index';
import { createKeyspace } from '../lib/redis/keys';
import { parseTenantId } from '../lib/tenant/tenant-id';
import { periodAt } from '../plugins/token-meter/period';
import { Closers, type Sent } from '../test/helpers/frontdoor';
import { startMeterDoor, totals, type MeterDoor } from '../test/helpers/token-meter-door';
import { percentile, table, writeSection } from './report';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const CONCURRENT = 200;
const MAX_TOKENS = 50;

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

const chatBody = (content: string, extra: Record<string, unknown> = {}): object => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

/** Time to the first body byte, and the whole text. */
function firstByte(
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ ttfbMs: number; text: string; status: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        let ttfb = NaN;
        let text = '';
        res.on('data', (c: Buffer) => {
          if (Number.isNaN(ttfb)) ttfb = Number(process.hrtime.bigint() - t0) / 1e6;
          text += c.toString('utf8');
        });
        res.on('end', () => resolve({ ttfbMs: ttfb, text, status: res.statusCode ?? 0 }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function streamUsage(text: string): Usage | undefined {
  for (const e of text.split('\n\n').reverse()) {
    if (!e.startsWith('data: {')) continue;
    const u = (JSON.parse(e.slice(6)) as { usage?: Usage | null }).usage;
    if (u) return u;
  }
  return undefined;
}

async function pool<T>(
  n: number,
  concurrency: number,
  fn: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

interface Result {
  kind: string;
  cap: number;
  settled: number;
  served: number;
  clamped: number;
  refused: number;
  other: number;
  mockTokens: number;
  ledgerTokens: number;
  ledgerRequests: number;
  ttfbChain: number;
  ttfbDirect: number;
  pdk: string;
}

async function overshoot(door: MeterDoor, cap: number): Promise<Partial<Result>> {
  const prompt = 'count me in';
  const results = await Promise.all(
    Array.from({ length: CONCURRENT }, () =>
      door.call('bench', '/v1/chat/completions', {
        body: chatBody(prompt, { max_tokens: MAX_TOKENS }),
      }),
    ),
  );
  const by = (f: (r: Sent) => boolean): number => results.filter((r) => f(r.res)).length;
  const served = by((r) => r.status === 200 && r.headers['x-budget-state'] === 'ok');
  const clamped = by((r) => r.status === 200 && r.headers['x-budget-state'] === 'clamp');
  const refused = by((r) => r.status === 429);
  const redis = createClient({ url: REDIS_URL });
  await redis.connect();
  const key = createKeyspace(door.namespace).budget(
    parseTenantId('bench'),
    periodAt('month', Date.now()).id,
  );
  let settled = NaN;
  for (let i = 0; i < 200; i++) {
    const [used, reserved] = await redis.hmGet(key, ['used_tokens', 'reserved_tokens']);
    if (Number(reserved ?? 0) === 0) {
      settled = Number(used ?? 0);
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await redis.close();
  return { cap, settled, served, clamped, refused, other: CONCURRENT - served - clamped - refused };
}

async function exactness(door: MeterDoor): Promise<Partial<Result>> {
  let mockTokens = 0;
  await pool(200, 16, async (i) => {
    const stream = i % 2 === 0;
    if (stream) {
      const r = await firstByte(
        `${door.url}/v1/chat/completions`,
        { apikey: 'acme-key' },
        JSON.stringify(chatBody(`streamed question number ${i}`, { stream: true })),
      );
      const u = streamUsage(r.text);
      if (r.status !== 200 || !u) throw new Error(`stream ${i}: ${r.status}`);
      mockTokens += u.prompt_tokens + u.completion_tokens;
    } else {
      const { res } = await door.call('acme', '/v1/chat/completions', {
        body: chatBody(`plain question number ${i} with a few more words`),
      });
      const u = (res.json as { usage?: Usage }).usage;
      if (res.status !== 200 || !u) throw new Error(`plain ${i}: ${res.status}`);
      mockTokens += u.prompt_tokens + u.completion_tokens;
    }
  });
  const usage = await door.usage('acme', (r) => totals(r).n >= 200);
  const t = totals(usage);
  return { mockTokens, ledgerTokens: t.input + t.output, ledgerRequests: t.n };
}

async function ttfb(door: MeterDoor): Promise<Partial<Result>> {
  door.upstream.configure({ streamChunkDelayMs: 20 });
  const body = JSON.stringify(chatBody('a streamed answer, please', { stream: true }));
  const chain: number[] = [];
  const direct: number[] = [];
  for (let i = 0; i < 40; i++) {
    chain.push(
      (await firstByte(`${door.url}/v1/chat/completions`, { apikey: 'globex-key' }, body)).ttfbMs,
    );
    direct.push(
      (
        await firstByte(
          `${door.upstream.url}/v1/chat/completions`,
          {},
          JSON.stringify(
            chatBody('a streamed answer, please', {
              stream: true,
              stream_options: { include_usage: true },
            }),
          ),
        )
      ).ttfbMs,
    );
  }
  door.upstream.configure({ streamChunkDelayMs: 0 });
  chain.sort((a, b) => a - b);
  direct.sort((a, b) => a - b);
  return { ttfbChain: percentile(chain, 50), ttfbDirect: percentile(direct, 50) };
}

function pdkCounts(door: MeterDoor, ids: string[]): string {
  const stats = door.gateway.requestStats;
  if (typeof stats !== 'function') return '—';
  const seen = new Map<string, number>();
  for (const id of ids) {
    const p = stats(id)?.plugins['token-meter'];
    if (!p) continue;
    const key = Object.entries(p)
      .map(([phase, s]) => `${phase} ${Object.values(s.pdkCalls).reduce((a, b) => a + b, 0)}`)
      .join(', ');
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return [...seen.keys()].join(' / ') || '—';
}

async function runOn(kind: 'kong' | 'harness'): Promise<Result> {
  process.env.GATEWAY = kind;
  const closers = new Closers();
  try {
    // Room for about 50 worst cases (prompt + MAX_TOKENS) of the overshoot request.
    const cap = 50 * (15 + MAX_TOKENS);
    const door = await startMeterDoor(closers.add, {
      plans: {
        free: {
          budget_tokens: cap,
          allow_downgrade: false,
          allow_clamp: true,
          min_clamp_tokens: 5,
        },
        pro: { budget_tokens: 10_000_000 },
      },
    });
    // Warm up (plugin instances, Redis connections, JIT).
    for (let i = 0; i < 10; i++) {
      await door.call('globex', '/v1/chat/completions', { body: chatBody('warm up') });
    }
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await door.call('globex', '/v1/chat/completions', { body: chatBody('count pdk') });
      ids.push(String(r.res.headers['x-kong-request-id'] ?? ''));
    }
    const o = await overshoot(door, cap);
    const e = await exactness(door);
    const f = await ttfb(door);
    return { kind, pdk: pdkCounts(door, ids), ...o, ...e, ...f } as Result;
  } finally {
    await closers.closeAll();
  }
}

async function main(): Promise<void> {
  const kinds: Array<'kong' | 'harness'> = locateKong() ? ['kong', 'harness'] : ['harness'];
  const results: Result[] = [];
  for (const k of kinds) results.push(await runOn(k));
  const body = `## token-meter: overshoot, exactness, streaming

Command: \`npm run bench -- token-meter\` (bench/token-meter.ts). key-auth + tenant-auth +
token-meter + Kong's post-function (the usage snippet), real Redis, mock upstream.

- **Overshoot**: ${CONCURRENT} concurrent requests (max_tokens ${MAX_TOKENS}) from one tenant
  whose budget holds about 50 worst cases; clamping allowed (min 5). Overshoot = settled − cap,
  read from Redis once every reservation is settled. Requests that settle early free budget
  for later ones (their real usage is below the worst case), so more than 50 can be served.
- **Exactness**: 100 streamed + 100 non-streamed requests (16 at a time); the ledger total
  (read back through the showback endpoint) against the sum of the usage the mock reported.
- **TTFB**: p50 time to the first byte of a streamed answer (mock chunk delay 20 ms), 40
  sequential requests each way.
- **Redis**: one script call in access (reserve), one in log (settle) per metered request.

${table(
  [
    'gateway',
    'cap (tokens)',
    'settled',
    'overshoot',
    'served / clamped / refused / other',
    'mock tokens',
    'ledger tokens',
    'ledger requests',
    'TTFB chain / direct (ms)',
    'TTFB ratio',
    'PDK calls (harness)',
  ],
  results.map((r) => [
    r.kind,
    r.cap,
    r.settled,
    Math.max(0, r.settled - r.cap),
    `${r.served} / ${r.clamped} / ${r.refused} / ${r.other}`,
    r.mockTokens,
    r.ledgerTokens,
    r.ledgerRequests,
    `${r.ttfbChain.toFixed(1)} / ${r.ttfbDirect.toFixed(1)}`,
    (r.ttfbChain / r.ttfbDirect).toFixed(2),
    r.pdk,
  ]),
)}`;
  writeSection('token-meter', body);
  process.stdout.write(`${body}\n`);
  for (const r of results) {
    if (r.settled > r.cap) throw new Error(`${r.kind}: overshoot ${r.settled - r.cap}`);
    if (r.ledgerTokens !== r.mockTokens) throw new Error(`${r.kind}: ledger != mock usage`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
