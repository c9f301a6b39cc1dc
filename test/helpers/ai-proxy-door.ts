/**
 * kong.yml's chain with Kong's ai-proxy in front of each provider format, for
 * test/plugins/kong-ai-proxy.test.ts and bench/ai-proxy.ts (docs/operations.md, "Beside Kong's AI
 * plugins"): the provider stubs (test/helpers/ai-providers.ts), the recipe's changes to
 * kong.yml (usage reader before ai-proxy, merged system message, circuit-breaker without
 * routing, the provider's models and prices), tenant acme's knowledge seeded in Milvus, and the
 * ledger read back.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { parse as parseYaml } from 'yaml';
import { ROOT, send, type Closers, type Sent } from './frontdoor';
import { seedKnowledge } from './chain-config';
import { startKongYmlDoor, type KongYmlDoor, type KongYmlEntry } from './kong-yml-door';
import { connectMilvus } from '../integration/services';
import { createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';
import type { ReceivedRequest } from '../../mock-upstream/recording';
import {
  GEMINI,
  PROVIDER_ROUTES,
  startGeminiStub,
  type GeminiStub,
  type Provider,
} from './ai-providers';

export {
  BEDROCK,
  CLAUDE,
  COHERE,
  GEMINI,
  HUGGINGFACE,
  OLLAMA,
  startGeminiStub,
  type GeminiStub,
  type Provider,
} from './ai-providers';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const CODENAME = `ORCHID${randomBytes(3).toString('hex').toUpperCase()}`;
export const ACME_PERSONA = "You are Acme Corp's support assistant.";
export const USAGE_SNIPPET = readFileSync(
  path.join(ROOT, 'plugins', 'token-meter', 'usage-snippet.lua'),
  'utf8',
);

/** The plugin entries of an example under examples/kong-ai-plugins/ (what the docs show). */
export function exampleEntries(file: string): Array<KongYmlEntry & Record<string, unknown>> {
  const doc = parseYaml(
    readFileSync(path.join(ROOT, 'examples', 'kong-ai-plugins', file), 'utf8'),
  ) as { plugins: Array<KongYmlEntry & Record<string, unknown>> };
  return doc.plugins;
}

/**
 * The recipe for a provider whose stream ai-proxy converts (Anthropic): token-meter's usage
 * reader moves from post-function's body_filter to pre-function's, which runs before ai-proxy's
 * and so reads the provider's own events (usage in message_start and message_delta).
 */
export function usageReaderBeforeAiProxy(p: KongYmlEntry): void {
  const c = p.config as { body_filter?: string[] };
  if (p.name === 'post-function')
    c.body_filter = (c.body_filter ?? []).filter((lua) => lua !== USAGE_SNIPPET);
  if (p.name === 'pre-function') c.body_filter = [USAGE_SNIPPET];
}

export const PROVIDER_KEY = `sk-provider-${randomBytes(6).toString('hex')}`;

export interface Door {
  door: KongYmlDoor;
  redis: RedisClient;
}

/** The fields of kong.yml plugin configs these tests change. */
export interface EntryConfig {
  [field: string]: unknown;
  model: { options: Record<string, unknown> };
  plans: Record<string, Record<string, unknown>>;
  tenants: Record<string, Record<string, unknown>>;
  prices: Record<string, unknown>;
}

export type Adjust = (p: KongYmlEntry, upstreamUrl: string) => void;

export async function startDoor(
  closers: Closers,
  extraPlugins: Array<KongYmlEntry & Record<string, unknown>>,
  adjust: Adjust,
  consumerFields: Record<string, Record<string, unknown>> = {},
): Promise<Door> {
  const collection = `kta_aiproxy_${randomBytes(4).toString('hex')}`;
  const secret = randomBytes(32).toString('hex');
  const door = await startKongYmlDoor(
    closers.add,
    (p, u) => {
      if (p.name === 'retrieval-injector')
        (p.config as { milvus: Record<string, unknown> }).milvus.collection = collection;
      adjust(p, u);
    },
    [],
    [],
    { env: { KTA_KNOWLEDGE_SECRET: secret }, extraPlugins, consumerFields },
  );
  const milvus = await connectMilvus();
  const redis = createRedis({ url: REDIS_URL, commandTimeoutMs: 3000 });
  await waitForRedis(redis, 5000);
  closers.add(async () => {
    await milvus.dropCollection({ collection_name: collection }).catch(() => undefined);
    milvus.closeConnection();
    await redis.quit().catch(() => undefined);
  });
  await seedKnowledge(
    { milvus, redis, collection, secret, url: door.upstream.url },
    [['acme', `Launch memo: the launch codename is ${CODENAME}. The launch is in May.`]],
    `${door.namespace}ri`,
  );
  return { door, redis };
}

export async function ask(
  d: Door,
  tenant: 'acme' | 'globex',
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ res: Sent; upstream: ReceivedRequest | undefined }> {
  const id = randomUUID();
  const res = await send(`${d.door.url}/v1/chat/completions`, {
    headers: { ...headers, apikey: `${tenant}-demo-key`, 'x-test-id': id },
    body,
  });
  return { res, upstream: d.door.upstream.received.find((r) => r.headers['x-test-id'] === id) };
}

/** The ledger entry token-meter wrote for the request Kong answered with `res`. */
export async function ledgerEntry(
  d: Door,
  tenant: string,
  res: Sent,
): Promise<Record<string, string>> {
  const rid = String(res.headers['x-kong-request-id'] ?? '');
  const key = createKeyspace(`${d.door.namespace}tm`).usageLedger(
    parseTenantId(tenant),
    periodAt('month', Date.now()).id,
  );
  const until = Date.now() + 10_000;
  for (;;) {
    const entries = await d.redis.xRange(key, '-', '+');
    const mine = (entries ?? []).find((e) => e.message.rid === rid);
    if (mine) return mine.message;
    if (Date.now() > until) throw new Error(`no ledger entry for request ${rid}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The tenant's ledger entries of this month, oldest first. */
export async function ledgerEntries(d: Door, tenant: string): Promise<Record<string, string>[]> {
  const key = createKeyspace(`${d.door.namespace}tm`).usageLedger(
    parseTenantId(tenant),
    periodAt('month', Date.now()).id,
  );
  return ((await d.redis.xRange(key, '-', '+')) ?? []).map((e) => e.message);
}

/** The tenant's ledger, summed, equals what the upstream billed it, to the token. */
export async function ledgerEqualsUpstream(
  t: ExecutionContext,
  d: Door,
  tenant: string,
): Promise<void> {
  const billed = d.door.upstream.usage()[tenant];
  const entries = await ledgerEntries(d, tenant);
  const sum = (f: string) => entries.reduce((n, e) => n + Number(e[f] ?? 0), 0);
  t.is(sum('prompt'), billed?.prompt ?? -1, "ledger prompt tokens = the upstream's");
  t.is(sum('completion'), billed?.completion ?? -1, "ledger completion tokens = the upstream's");
}

/** The tenant's ledger entries, summed, and how many were estimated. */
export async function ledgerTotals(
  d: Door,
  tenant: string,
): Promise<{ entries: number; prompt: number; completion: number; estimated: number }> {
  const key = createKeyspace(`${d.door.namespace}tm`).usageLedger(
    parseTenantId(tenant),
    periodAt('month', Date.now()).id,
  );
  const entries = (await d.redis.xRange(key, '-', '+')) ?? [];
  const sum = (f: string) => entries.reduce((n, e) => n + Number(e.message[f] ?? 0), 0);
  return {
    entries: entries.length,
    prompt: sum('prompt'),
    completion: sum('completion'),
    estimated: entries.filter((e) => e.message.estimated === '1').length,
  };
}

/** A door with ai-proxy to one provider, and what that provider billed so far. */
export interface ProviderDoor extends Door {
  provider: Provider;
  /** The model the plans serve on this route. */
  model: string;
  billed(): { prompt: number; completion: number };
  gemini?: GeminiStub;
}

/** Plans serving only `model` (priced), persona for acme: the provider's side of kong.yml. */
function servePlansWith(p: KongYmlEntry, model: string, price: Record<string, unknown>): void {
  const c = p.config as EntryConfig;
  if (p.name === 'tenant-auth') {
    c.model_aliases = {};
    for (const plan of Object.values(c.plans)) {
      plan.models = [model, 'text-embedding-3-small'];
      plan.preferred_model = model;
      delete plan.fallback_model;
    }
  }
  if (p.name === 'token-meter') c.prices[model] = { kind: 'generation', ...price };
}

/** The recipe's changes common to every provider. */
function recipe(p: KongYmlEntry): void {
  const c = p.config as EntryConfig;
  usageReaderBeforeAiProxy(p);
  if (p.name === 'tenant-auth') (c.tenants.acme ?? {}).persona = ACME_PERSONA;
  if (p.name === 'retrieval-injector') c.inject = 'merged_system_message';
  // circuit-breaker's own upstreams would override ai-proxy's target (the recipe: none).
  if (p.name === 'circuit-breaker') {
    c.upstreams = {};
    c.plans = {};
  }
}

/** kong.yml's chain with ai-proxy to `provider` (the recipe applied), on the real Kong. */
export async function startProviderDoor(
  closers: Closers,
  provider: Provider,
): Promise<ProviderDoor> {
  const aiProxy = (model: Record<string, unknown>, auth: Record<string, unknown>) => ({
    name: 'ai-proxy',
    route: 'ai',
    config: { route_type: 'llm/v1/chat', auth, model },
  });
  const bearer = { header_name: 'Authorization', header_value: `Bearer ${PROVIDER_KEY}` };
  if (provider === 'gemini') {
    const gemini = await startGeminiStub(closers);
    const d = await startDoor(
      closers,
      [
        aiProxy(
          {
            provider: 'gemini',
            name: GEMINI,
            options: {
              gemini: {
                api_endpoint: `127.0.0.1:${gemini.port}`,
                project_id: 'p1',
                location_id: 'l1',
              },
            },
          },
          bearer,
        ),
      ],
      (p) => {
        recipe(p);
        servePlansWith(p, GEMINI, { prompt_per_million: 0.1, completion_per_million: 0.4 });
      },
    );
    return { ...d, provider, model: GEMINI, gemini, billed: () => ({ ...gemini.billed }) };
  }
  const how = PROVIDER_ROUTES[provider];
  const model = how.model;
  const d = await startDoor(
    closers,
    how.example
      ? exampleEntries(how.example)
      : [
          aiProxy(
            {
              provider: how.kong ?? provider,
              ...(how.named ? { name: model } : {}),
              options: { ...how.options },
            },
            provider === 'bedrock'
              ? { aws_access_key_id: 'AKIAMOCKKEY', aws_secret_access_key: PROVIDER_KEY }
              : bearer,
          ),
        ],
    (p, u) => {
      recipe(p);
      const c = p.config as EntryConfig;
      if (p.name === 'ai-proxy') c.model.options.upstream_url = `${u}${how.path}`;
      if (how.price) servePlansWith(p, model, how.price);
    },
  );
  return {
    ...d,
    provider,
    model,
    billed: () => {
      const u = d.door.upstream.usage().acme;
      return { prompt: u?.prompt ?? 0, completion: u?.completion ?? 0 };
    },
  };
}
