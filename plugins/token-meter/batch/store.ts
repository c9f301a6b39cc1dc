/**
 * token-meter's batch records in Redis, each under the tenant's own key (lib/redis/keys.ts
 * `batchInput`, `batchOpen`): what an uploaded input file asks for, and the batches reserved and
 * not yet settled. Every call takes the request's TenantContext and names the key from its
 * tenant id: no call reads a file or a batch by its id alone, so tenant B's batch can never be
 * reserved from, or settled as, tenant A's.
 */
import { withDeadline, type RedisClient } from '../../../lib/redis/client';
import { isProviderObjectId, type Keyspace } from '../../../lib/redis/keys';
import { sharedJsonObject } from '../../../lib/request/shared-keys';
import type { TenantContext } from '../../../lib/tenant/context';
import type { FlatPrice } from '../pricing';
import { decodeSummary, type BatchInputSummary } from './input';

/** A batch reserved at creation, until the finished batch (or the expiry) settles it. */
export interface OpenBatch {
  readonly v: 1;
  /** The creation's request id: the reservation's, and the settlement's idempotency key. */
  readonly requestId: string;
  readonly period: string;
  readonly periodEndMs: number;
  readonly model: string;
  /** The batch price (the model's, at its long-context tier when a line reached it, × ratio). */
  readonly price: FlatPrice;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly lines: number;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function decodeOpen(raw: unknown): OpenBatch | undefined {
  const s = sharedJsonObject(raw);
  if (!s || s.v !== 1 || !isRecord(s.price)) return undefined;
  const p = s.price;
  if (
    typeof s.requestId !== 'string' ||
    s.requestId === '' ||
    typeof s.period !== 'string' ||
    !isNum(s.periodEndMs) ||
    typeof s.model !== 'string' ||
    !isNum(p.prompt) ||
    !isNum(p.completion) ||
    !isNum(p.cachedPrompt) ||
    !isNum(s.promptTokens) ||
    !isNum(s.completionTokens) ||
    !isNum(s.lines)
  ) {
    return undefined;
  }
  return s as unknown as OpenBatch;
}

export class BatchStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keyspace,
  ) {}

  /** Keeps what the tenant's uploaded file asks for, under the provider's file id. */
  async keepInput(
    ctx: TenantContext,
    fileId: string,
    summary: BatchInputSummary,
    ttlMs: number,
  ): Promise<boolean> {
    if (!isProviderObjectId(fileId)) return false;
    const key = this.keys.batchInput(ctx.tenantId, fileId);
    await withDeadline(
      this.redis,
      this.redis.set(key, JSON.stringify(summary), { PX: Math.ceil(ttlMs) }),
    );
    return true;
  }

  /** The tenant's own input file's summary; undefined when this tenant uploaded no such file. */
  async input(ctx: TenantContext, fileId: string): Promise<BatchInputSummary | undefined> {
    if (!isProviderObjectId(fileId)) return undefined;
    const raw = await withDeadline(
      this.redis,
      this.redis.get(this.keys.batchInput(ctx.tenantId, fileId)),
    );
    return decodeSummary(raw);
  }

  /** Records a batch reserved for the tenant, under the provider's batch id. */
  async keepOpen(ctx: TenantContext, batchId: string, open: OpenBatch, ttlMs: number) {
    if (!isProviderObjectId(batchId)) return false;
    const key = this.keys.batchOpen(ctx.tenantId, batchId);
    await withDeadline(
      this.redis,
      this.redis.set(key, JSON.stringify(open), { PX: Math.ceil(ttlMs) }),
    );
    return true;
  }

  /** The tenant's own open batch; undefined when the tenant has no such batch open. */
  async open(ctx: TenantContext, batchId: string): Promise<OpenBatch | undefined> {
    if (!isProviderObjectId(batchId)) return undefined;
    const raw = await withDeadline(
      this.redis,
      this.redis.get(this.keys.batchOpen(ctx.tenantId, batchId)),
    );
    return decodeOpen(raw);
  }

  /** Forgets a settled batch. */
  async close(ctx: TenantContext, batchId: string): Promise<void> {
    if (!isProviderObjectId(batchId)) return;
    await withDeadline(this.redis, this.redis.del(this.keys.batchOpen(ctx.tenantId, batchId)));
  }
}
