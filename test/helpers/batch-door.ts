/**
 * The repo's kong.yml chain with the Batches API served to acme and globex, and what a batch
 * test reads besides the answers: token-meter's budget, reservations and ledger in Redis
 * (test/plugins/token-meter-batches.test.ts, test/isolation/batch-meter.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { createClient, type RedisClientType } from 'redis';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { periodAt } from '../../plugins/token-meter/period';
import { eventually, send, type OnClose, type Sent } from './frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from './kong-yml-door';

const KEYS = { acme: 'acme-demo-key', globex: 'globex-demo-key' } as const;
export type Tenant = keyof typeof KEYS;

export interface Called {
  readonly res: Sent;
  /** Requests of this call the provider received. */
  readonly upstream: number;
}

export interface BatchDoor {
  readonly door: KongYmlDoor;
  readonly redis: RedisClientType;
  /** token-meter's keys. */
  readonly keys: Keyspace;
  call(
    tenant: Tenant,
    method: string,
    path: string,
    body?: object | string,
    headers?: Record<string, string>,
  ): Promise<Called>;
  /** A batch input file sent as OpenAI's SDKs send it (a form); text lines go as they are. */
  upload(tenant: Tenant, lines: ReadonlyArray<object | string>, purpose?: string): Promise<Called>;
  /** Uploads and waits for both log phases (the file's owner, the meter's summary): its id. */
  uploaded(tenant: Tenant, lines: readonly object[]): Promise<string>;
  create(tenant: Tenant, fileId: string, metadata?: Record<string, string>): Promise<Called>;
  /** Waits until the log phase recorded the batch as open (its reservation to settle). */
  opened(tenant: Tenant, batchId: string): Promise<void>;
  ledger(tenant: Tenant): Promise<Array<Record<string, string>>>;
  /** The request ids of the tenant's open reservations this period. */
  reservations(tenant: Tenant): Promise<string[]>;
  budgetKey(tenant: Tenant): string;
  reservationsKey(tenant: Tenant): string;
}

/** `store` and the APIs served to both tenants: `scoped` (one provider key) or `on`. */
export async function startBatchDoor(
  onClose: OnClose,
  store: 'scoped' | 'on',
  /** Merged into token-meter's config (e.g. a smaller `batches`). */
  meter: Record<string, unknown> = {},
): Promise<BatchDoor> {
  const served = {
    store,
    api_surface: ['chat', 'responses', 'embeddings', 'models', 'showback', 'files', 'batches'],
  };
  const door = await startKongYmlDoor(onClose, (p) => {
    if (p.name === 'token-meter') p.config = { ...p.config, ...meter };
    if (p.name !== 'tenant-auth') return;
    const c = p.config as { tenants?: Record<string, Record<string, unknown>> };
    c.tenants = {
      ...c.tenants,
      acme: { ...c.tenants?.acme, ...served },
      globex: { ...c.tenants?.globex, ...served },
    };
  });
  const redis: RedisClientType = createClient({
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  });
  await redis.connect();
  onClose(async () => {
    await redis.quit();
  });
  const keys = createKeyspace(`${door.namespace}tm`);
  const period = () => periodAt('month', Date.now()).id;
  const budgetKey = (tenant: Tenant) => keys.budget(parseTenantId(tenant), period());

  const call = doorCall(door);

  const upload: BatchDoor['upload'] = (tenant, lines, purpose = 'batch') => {
    const boundary = `b${randomUUID().replace(/-/g, '')}`;
    const form = [
      `--${boundary}`,
      'Content-Disposition: form-data; name="purpose"',
      '',
      purpose,
      `--${boundary}`,
      'Content-Disposition: form-data; name="file"; filename="input.jsonl"',
      'Content-Type: application/jsonl',
      '',
      lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n'),
      `--${boundary}--`,
      '',
    ].join('\r\n');
    return call(tenant, 'POST', '/v1/files', form, {
      'content-type': `multipart/form-data; boundary=${boundary}`,
    });
  };

  return {
    door,
    redis,
    keys,
    call,
    upload,
    async uploaded(tenant, lines) {
      const r = await upload(tenant, lines);
      if (r.res.status !== 200) throw new Error(`upload: ${r.res.status} ${r.res.text}`);
      const id = String((r.res.json as { id: string }).id);
      await eventually(async () => {
        const kept = await redis.exists(keys.batchInput(parseTenantId(tenant), id));
        const owned =
          store === 'on' || (await call(tenant, 'GET', `/v1/files/${id}`)).res.status === 200;
        return kept === 1 && owned ? true : undefined;
      }, 10_000);
      return id;
    },
    create: (tenant, fileId, metadata = {}) =>
      call(tenant, 'POST', '/v1/batches', {
        input_file_id: fileId,
        endpoint: '/v1/chat/completions',
        completion_window: '24h',
        metadata,
      }),
    async opened(tenant, batchId) {
      await eventually(
        async () =>
          (await redis.exists(keys.batchOpen(parseTenantId(tenant), batchId))) === 1
            ? true
            : undefined,
        10_000,
      );
    },
    async ledger(tenant) {
      const key = keys.usageLedger(parseTenantId(tenant), period());
      return ((await redis.xRange(key, '-', '+')) ?? []).map((e) => e.message);
    },
    async reservations(tenant) {
      const fields = await redis.hKeys(budgetKey(tenant));
      return fields.filter((f) => f.startsWith('r:')).map((f) => f.slice(2));
    },
    budgetKey,
    reservationsKey: (tenant) => keys.budgetReservations(parseTenantId(tenant), period()),
  };
}

/** A tenant's request to `door` (acme or globex, by its demo key), with what reached the provider. */
export function doorCall(door: KongYmlDoor): BatchDoor['call'] {
  return async (tenant, method, path, body, headers = {}) => {
    const id = randomUUID();
    const res = await send(`${door.url}${path}`, {
      method,
      headers: { apikey: KEYS[tenant], 'x-test-id': id, ...headers },
      ...(body === undefined ? {} : { body }),
    });
    return {
      res,
      upstream: door.upstream.received.filter((r) => r.headers['x-test-id'] === id).length,
    };
  };
}

/** One chat request of a batch input file (a fresh question each time: no cache in the way). */
export function chatLine(i: number, extra: Record<string, unknown> = { max_tokens: 40 }): object {
  return {
    custom_id: `req-${i}`,
    method: 'POST',
    url: '/v1/chat/completions',
    body: {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `batch question number ${i}: ${randomUUID()}` }],
      ...extra,
    },
  };
}

export const json = (r: Called) => r.res.json as Record<string, unknown>;
export const code = (r: Called) => (r.res.json as { error?: { code: string } }).error?.code;
export const param = (r: Called) => (r.res.json as { error?: { param: string } }).error?.param;
