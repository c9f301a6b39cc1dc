/**
 * The whole chain of kong.yml (every plugin, the real Redis and Milvus, on GATEWAY's gateway)
 * with tenant A seeded everywhere at once, through the chain itself: secret documents in Milvus
 * (ingested with the project's KnowledgeStore), exact and semantic cache entries and ledger
 * entries made by A's own requests, a persona, a tool and a model only A has, a dedicated
 * upstream, an open breaker on it and a drained budget. Tenant B (same plan as A) and the limit
 * tenants are the run's own. test/isolation/chain-*.test.ts probe it; README there lists why.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestFn } from 'ava';
import { ConsistencyLevelEnum, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import { closeAllRedis, type RedisClient } from '../../lib/redis/client';
import type { MockUpstream } from '../../mock-upstream/index';
import { connectMilvus, connectRedis } from '../integration/services';
import { sharedDoor, Closers } from './frontdoor';
import { answerPrint, figure, probe, type Probe, type ProbeInit, type Secret } from './chain-probe';
import { adjustChain, seedKnowledge } from './chain-config';
import { startKongYmlDoor, type KongYmlDoor } from './kong-yml-door';
import { freePort, startExtraUpstream } from './upstreams';

const hex = (n: number) => randomBytes(n).toString('hex');

export interface ChainTenant {
  id: string;
  key: string;
}

export interface ChainFixture {
  door: KongYmlDoor;
  upstreams: { main: MockUpstream; dedicated: MockUpstream; slow: MockUpstream };
  redis: RedisClient;
  milvus: MilvusClient;
  A: ChainTenant;
  B: ChainTenant;
  /** Limit tenants (plan pro, per-tenant overrides): tpm X/Y, rpm Z, concurrency C, stream W. */
  limits: Record<'X' | 'Y' | 'Z' | 'C' | 'W', ChainTenant>;
  /** A's secret texts, each also in `secrets`. */
  m: {
    doc: string;
    pw: string;
    persona: string;
    tool: string;
    model: string;
    q: string;
    sem: string;
    emb: string;
  };
  /** A's requests, as A sent them: the probes replay them as B. */
  asked: { exact: object; semantic: object; embedding: object };
  /** What A got back from them. */
  printA: { exact: string; semantic: string };
  /** A's figures after seeding (showback totals, the cap, the breaker's metrics port). */
  figuresA: { input: number; tokens: number; usd: number; budget: number };
  breakerMetrics: string;
  reservationTtl: number;
  secrets: Secret[];
  as(t: ChainTenant | null, path: string, init?: ProbeInit): Promise<Probe>;
}

const BUDGET_A = 6173;
const RESERVATION_TTL = 15;
const EMB_MODEL = 'text-embedding-3-small';

export async function startChainFixture(closers: Closers, nodes = 1): Promise<ChainFixture> {
  const t = (p: string): ChainTenant => {
    const id = `${p}${hex(4)}`;
    return { id, key: `${id}-key` };
  };
  const A = t('cha');
  const B = t('chb');
  const limits = { X: t('chx'), Y: t('chy'), Z: t('chz'), C: t('chc'), W: t('chw') };
  const h = hex(4);
  const m = {
    doc: `ZEPHYR${h}`,
    pw: `pw-${hex(5)}`,
    persona: `KEEPER${hex(4)}`,
    tool: `vault_tool_${hex(3)}`,
    model: 'gpt-4.1',
    q: `qa${hex(4)}`,
    sem: `sq${hex(4)}`,
    emb: `em${hex(4)}`,
  };
  const dedicated = await startExtraUpstream(closers.add);
  // Slow enough that five requests sent at once overlap on a loaded machine.
  const slow = await startExtraUpstream(closers.add, { latencyMs: 2500, streamChunkDelayMs: 150 });
  const collection = `kta_chain_k_${hex(5)}`;
  const semCollection = `kta_chain_s_${hex(5)}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'kta-chain-'));
  closers.add(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const secretFile = path.join(dir, 'knowledge.secret');
  const secret = hex(32);
  writeFileSync(secretFile, secret, { mode: 0o644 });
  const breakerPort = await freePort();
  const milvus = await connectMilvus();
  closers.add(() => {
    milvus.closeConnection();
  });
  closers.add(async () => {
    for (const c of [collection, semCollection])
      await milvus.dropCollection({ collection_name: c }).catch(() => undefined);
  });
  const redis = await connectRedis();
  closers.add(closeAllRedis);

  const consumers = [A, B, ...Object.values(limits)].map((x) => ({
    username: `${x.id}-app`,
    custom_id: x.id,
    tags: ['plan:pro'],
    keyauth_credentials: [{ key: x.key }],
  }));
  const door = await startKongYmlDoor(
    closers.add,
    (p, upstreamUrl) =>
      adjustChain(p, upstreamUrl, {
        A,
        B,
        limits,
        m,
        dedicated,
        slow,
        collection,
        semCollection,
        secretFile,
        breakerPort,
        budgetA: BUDGET_A,
        reservationTtl: RESERVATION_TTL,
      }),
    consumers,
    [],
    {},
    nodes,
  );
  const upstreams = { main: door.upstream, dedicated, slow };
  const as = (who: ChainTenant | null, p: string, init?: ProbeInit) =>
    probe(door.url, upstreams, who ? who.key : null, p, init);

  // Milvus: A's secret memo and B's own, through the library `npm run ingest` uses.
  await seedKnowledge(
    { milvus, redis, collection, secret, url: door.upstream.url },
    [
      [
        A.id,
        `Vault memo: the merger codename is ${m.doc}; the vault password is ${m.pw}. Closing date: March 3.`,
      ],
      [B.id, 'Tenant B handbook: the cafeteria opens at nine and the gym at seven.'],
    ],
    `${door.namespace}ri`,
  );

  const ok = (r: Probe, what: string) => {
    if (r.res.status !== 200)
      throw new Error(`seeding ${what}: ${r.res.status} ${r.res.text.slice(0, 300)}`);
    return r;
  };
  const chat = (content: string, extra: object = {}) => ({
    model: 'gpt-4o-mini',
    temperature: 0,
    max_tokens: 40,
    messages: [{ role: 'user', content }],
    ...extra,
  });
  // Cache entries: the exact one, the semantic one (stored in Milvus from the log phase).
  const asked = {
    exact: chat(`What does the vault memo say about the merger codename and password? ${m.q}`),
    semantic: chat(`What is the closing date in the vault memo of the merger ${m.sem}`),
    embedding: { model: EMB_MODEL, input: `the vault embedding secret ${m.emb}` },
  };
  const exact = ok(await as(A, '/v1/chat/completions', { body: asked.exact }), 'exact');
  const semantic = ok(await as(A, '/v1/chat/completions', { body: asked.semantic }), 'semantic');
  ok(await as(A, '/v1/embeddings', { body: asked.embedding }), 'embedding');
  for (let i = 0; ; i++) {
    const rows = await milvus
      .query({
        collection_name: semCollection,
        filter: `tenant_id == "${A.id}"`,
        output_fields: ['tenant_id'],
        consistency_level: ConsistencyLevelEnum.Strong,
      })
      .catch(() => ({ data: [] }));
    if (rows.data.length > 0) break;
    if (i > 150) throw new Error('the semantic cache entry of A was never stored');
    await new Promise((r) => setTimeout(r, 100));
  }
  // Other paths A uses (their upstream records are the controls of B's probes on them).
  for (const body of [
    chat(`vault memo merger codename ${m.q}`, { stream: true }),
    chat('use the vault tool', { tools: [tool(m.tool)] }),
  ]) {
    ok(await as(A, '/v1/chat/completions', { body }), JSON.stringify(body));
  }

  // Paths the mock does not serve (404): what A's requests carried there is the control.
  await as(A, '/v1/responses', { body: { model: 'gpt-4o-mini', input: `vault memo ${m.q}` } });
  await as(A, '/v1/completions', { body: { model: 'gpt-4o-mini', prompt: `vault memo ${m.q}` } });

  // The breaker: A's dedicated upstream fails five times, then is healthy again; the breaker
  // stays open (half-open after an hour) and A is served by its own backup meanwhile.
  dedicated.configure({ failure: { mode: 'status', status: 500, count: 5 } });
  for (let i = 0; i < 5; i++)
    await as(A, '/v1/chat/completions', { body: chat(`fail ${i}`, { temperature: 1 }) });
  dedicated.configure({ failure: null });

  // The budget, drained by A's own requests: each asks for what is left less a margin (a refusal
  // means the guess of tokens per word was high: ask for less) until a short prompt is refused.
  let remaining = BUDGET_A - 1000;
  let perWord = 1.2;
  for (let i = 0; i < 14 && remaining > 40; i++) {
    const words = Math.max(1, Math.floor((remaining - 50) / perWord));
    const r = await as(A, '/v1/chat/completions', {
      body: chat('lorem '.repeat(words), { max_tokens: 16, temperature: 1 }),
    });
    if (r.res.status === 200) {
      remaining = Number(r.res.headers['x-budget-remaining-tokens'] ?? 0);
    } else if (r.res.status === 429) {
      perWord *= 1.5;
      const used = /\((\d+) of (\d+) tokens used/.exec(r.res.text);
      if (used) remaining = Number(used[2]) - Number(used[1]);
    } else {
      throw new Error(`draining A's budget: ${r.res.status} ${r.res.text.slice(0, 300)}`);
    }
  }
  const refused = await as(A, '/v1/chat/completions', { body: chat('lorem '.repeat(40)) });
  if (refused.res.status !== 429) throw new Error(`A's budget is not drained: ${refused.res.text}`);
  // A's figures as its showback prints them (one daily bucket holds all of the seeding).
  const start = Math.floor(Date.now() / 1000) - 3600;
  const rows = async (p: string) =>
    (
      (await as(A, `${p}?start_time=${start}&limit=2`)).res.json as {
        data: Array<{ results: Array<Record<string, number & { value: number }>> }>;
      }
    ).data.flatMap((b) => b.results);
  const usage = await rows('/v1/organization/usage/completions');
  const costs = await rows('/v1/organization/costs');
  const sum = (k: string) => usage.reduce((a, r) => a + (r[k] ?? 0), 0);
  const figuresA = {
    input: sum('input_tokens'),
    tokens: sum('input_tokens') + sum('output_tokens'),
    usd: costs.reduce((a, r) => a + (r.amount?.value ?? 0), 0),
    budget: BUDGET_A,
  };

  const printA = { exact: answerPrint(exact.res) ?? '', semantic: answerPrint(semantic.res) ?? '' };
  const secrets: Secret[] = [
    { what: 'A’s document (codename)', match: m.doc },
    { what: 'A’s document (password)', match: m.pw },
    { what: 'A’s persona', match: m.persona },
    { what: 'A’s tool', match: m.tool },
    { what: 'A’s exact-cache question', match: m.q },
    { what: 'A’s semantic-cache question', match: m.sem },
    { what: 'A’s embedded text', match: m.emb },
    { what: 'A’s tenant id', match: A.id },
    { what: 'A’s API key', match: A.key },
    { what: 'A’s dedicated upstream', match: `:${dedicated.port}` },
    { what: 'A’s upstream names', match: 'a-dedicated' },
    { what: 'A’s backup upstream', match: 'a-backup' },
    figure('A’s prompt tokens', figuresA.input),
    figure('A’s spend', figuresA.usd),
    figure('A’s budget', BUDGET_A),
  ];
  return {
    door,
    upstreams,
    redis,
    milvus,
    A,
    B,
    limits,
    m,
    asked,
    printA,
    figuresA,
    secrets,
    as,
    breakerMetrics: `http://127.0.0.1:${breakerPort}/metrics`,
    reservationTtl: RESERVATION_TTL,
  };
}

export function tool(name: string): object {
  return { type: 'function', function: { name, parameters: { type: 'object', properties: {} } } };
}

/** One fixture for a whole test file. */
export function sharedChainFixture(test: TestFn, nodes = 1): () => ChainFixture {
  return sharedDoor(test, 'chain fixture', (c) => startChainFixture(c, nodes));
}
