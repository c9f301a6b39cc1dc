/**
 * The Batches API on a metered route (issue 21): a batch's tokens are spent later, at the
 * provider, so everything the meter needs is taken where it can be:
 *
 * 1. `POST /files` with `purpose=batch`: the file's lines are read as they pass (input.ts),
 *    each must carry its bound; what the file asks for is kept under the tenant and the
 *    provider's file id once the provider answered (store.ts).
 * 2. `POST /batches`: the batch is reserved at creation, before the provider sees it, from that
 *    record: every line's prompt estimate and completion bound at the batch price
 *    (`batches.price_ratio`), in one budget-reserve script like any request; the 429 when it
 *    does not fit. The reservation is held `batches.reservation_ttl_seconds` (past the 24 h
 *    window), and billed at its bound, estimated, if nothing settles it by then.
 * 3. `GET /batches/{id}` (settle.ts, in log): a finished batch (completed, expired, cancelled, failed) settles the
 *    reservation from the `usage` the provider reports on it, exactly once (the creation's
 *    request id is the settlement's key); a batch that failed validation is released.
 *
 * Each step keeps what the next needs under the tenant's own key: a batch can only be reserved
 * from the tenant's own upload and only settles the tenant's own reservation.
 */
import { SHARED_KEYS } from '../../../lib/request/shared-keys';
import { normalisePathForMatch } from '../../../lib/http/api-surface';
import type { KongPdk } from '../../../lib/pdk/kong';
import { isRedisUnavailable } from '../../../lib/redis/errors';
import type { TenantRequest } from '../../../lib/tenant/read';
import { reserveBudget } from '../budget';
import { budgetHeaders } from '../headers';
import * as metrics from '../metrics';
import { periodAt } from '../period';
import { resolveBudget } from '../policy';
import { priceOf, type FlatPrice } from '../pricing';
import type { Ready } from '../ready';
import {
  budgetExhausted,
  budgetUnavailable,
  invalidRequest,
  MISCONFIGURED,
  modelNotPriced,
} from '../refusals';
import { UPSTREAM_ENCODING } from '../reserve';
import { METER_STATE_KEY, METER_STATE_NONE, type MeterState } from '../state';
import { summariseBatchInput, type BatchInputSummary } from './input';
import { OPEN_RECORD_EXTRA_MS, storeOf, type BatchState } from './state';
import type { OpenBatch } from './store';
import { readUpload } from './upload';

/** What a request is to the batch meter. */
export type BatchCall =
  | { readonly op: 'upload' }
  | { readonly op: 'create' }
  | { readonly op: 'read'; readonly id: string };

/** The batch call `method` on `upstreamPath` makes, or null for any other request. */
export function batchCall(method: string, upstreamPath: string): BatchCall | null {
  const path = normalisePathForMatch(upstreamPath);
  if (path === null) return null;
  const p = path.replace(/\/+$/, '');
  if (method === 'POST' && /\/files$/i.test(p)) return { op: 'upload' };
  if (method === 'POST' && /\/batches$/i.test(p)) return { op: 'create' };
  const read = /\/batches\/([^/]+)$/i.exec(p);
  if (method === 'GET' && read?.[1]) return { op: 'read', id: read[1] };
  return null;
}

const CAPTURE_KEY = SHARED_KEYS.objectCapture.key;

/** The provider's answer is kept for the log phase (its id, its usage), uncompressed. */
async function keepAnswer(kong: KongPdk, request: TenantRequest, state: BatchState) {
  await kong.ctx.shared.set(METER_STATE_KEY, JSON.stringify(state));
  await kong.ctx.shared.set(CAPTURE_KEY, '1');
  await kong.service.request.setHeaders(UPSTREAM_ENCODING);
  request.scope.applyHeaderWrites(UPSTREAM_ENCODING);
}

/** Access of a batch call on a metered route. */
export async function meterBatchCall(
  ready: Ready,
  kong: KongPdk,
  request: TenantRequest,
  call: BatchCall,
): Promise<void> {
  if (call.op === 'upload') return readInput(ready, kong, request);
  if (call.op === 'create') return reserveBatch(ready, kong, request);
  return keepAnswer(kong, request, { v: 1, batch: 'read', id: call.id });
}

/** `POST /files`: a batch input file's lines read and checked; any other upload passes. */
async function readInput(ready: Ready, kong: KongPdk, request: TenantRequest): Promise<void> {
  const { scope, tenant: ctx } = request;
  const none = async (): Promise<void> => {
    await kong.ctx.shared.set(METER_STATE_KEY, METER_STATE_NONE);
  };
  const type = (await scope.header(kong, 'content-type')) ?? '';
  if (!/^multipart\/form-data/i.test(type)) return none();
  // Larger than the meter reads: forwarded unread; a batch made of it is refused at creation.
  // Kong's get_raw_body(max) answers nil for a body over `max` that nginx buffered to a file,
  // which the plugin server cannot send back (a Lua error: a 500 for any large upload), so the
  // declared length is checked first; a chunked body is read whole (nginx's
  // client_max_body_size bounds it) and measured, as tenant-auth reads one.
  const max = ready.config.batches.max_input_bytes;
  const length = await scope.header(kong, 'content-length');
  const declared = length === undefined ? NaN : Number(length);
  const chunked = (await scope.header(kong, 'transfer-encoding')) !== undefined;
  if (!chunked && !(declared <= max)) return none();
  const raw = await scope.rawBody(kong, chunked ? 0 : max);
  if (raw === null || raw.length > max) return none();
  const upload = await readUpload(raw, type);
  if (upload.purpose !== 'batch' || upload.file === null) return none();
  const summary = await summariseBatchInput(upload.file, { config: ready.config, ctx });
  await keepAnswer(kong, request, { v: 1, batch: 'upload', summary });
}

/** The batch price: the model's (long-context tier when a line reached it) × the ratio. */
function batchPrice(ready: Ready, summary: BatchInputSummary): FlatPrice {
  const price = priceOf(ready.config, summary.model);
  if (!price) throw modelNotPriced(summary.model);
  const lc = price.longContext;
  const at = lc && summary.maxLinePromptTokens > lc.abovePromptTokens ? lc : price;
  const r = ready.config.batches.price_ratio;
  return {
    prompt: at.prompt * r,
    completion: at.completion * r,
    cachedPrompt: at.cachedPrompt * r,
  };
}

/** `POST /batches`: reserved from the tenant's own input file, or refused. */
async function reserveBatch(ready: Ready, kong: KongPdk, request: TenantRequest): Promise<void> {
  const { scope, tenant: ctx } = request;
  const c = ready.config;
  const budget = resolveBudget(c, ctx);
  if (!budget) throw MISCONFIGURED;
  const body = await scope.jsonBody(kong);
  const rec = body !== null && typeof body === 'object' && !Array.isArray(body) ? body : null;
  const fileId = rec ? (rec as Record<string, unknown>).input_file_id : undefined;
  if (typeof fileId !== 'string' || fileId === '') {
    throw invalidRequest('invalid_request_body', '`input_file_id` is required', 'input_file_id');
  }
  const store = await storeOf(ready);
  let summary: BatchInputSummary | undefined;
  try {
    summary = await store.input(ctx, fileId);
  } catch (e) {
    if (isRedisUnavailable(e)) throw budgetUnavailable();
    throw e;
  }
  if (!summary) {
    throw invalidRequest(
      'batch_input_unmetered',
      `the file '${fileId.slice(0, 64)}' was not uploaded through this metered route with purpose=batch (or what the meter read in it has expired): upload the batch input here, then make the batch`,
      'input_file_id',
    );
  }
  const endpoint = (rec as Record<string, unknown>).endpoint;
  if (endpoint !== summary.endpoint) {
    throw invalidRequest(
      'batch_endpoint_mismatch',
      `the input file's requests call ${summary.endpoint}; \`endpoint\` must say the same`,
      'endpoint',
    );
  }
  const price = batchPrice(ready, summary);
  const now = Date.now();
  const period = periodAt(c.period, now);
  const requestId = await scope.requestId(kong);
  if (requestId === '') throw new Error('no kong_request_id');
  const ttlMs = c.batches.reservation_ttl_seconds * 1000;
  const p = summary.promptTokens;
  const done = summary.completionTokens;
  let r;
  try {
    r = await reserveBudget(await ready.readyRedis(), ready.keys, ctx.tenantId, period.id, {
      requestId,
      ttlMs,
      keyTtlMs: Math.max(ready.keyTtlMs(period.endMs, now), ttlMs + OPEN_RECORD_EXTRA_MS),
      caps: budget.caps,
      // One way to serve it: a batch cannot be rewritten to another model or a lower bound.
      candidates: [
        {
          baseTokens: p,
          baseCost: p * price.prompt,
          unitTokens: 1,
          unitCost: price.completion,
          minUnits: done,
          maxUnits: done,
          softRatio: 1,
        },
      ],
      expiry: {
        modelAsked: summary.model,
        promptTokens: p,
        completionPerUnit: 1,
        stream: false,
        candidates: [{ model: summary.model, downgrade: 'none', price }],
      },
    });
  } catch (e) {
    // Never unchecked, whatever on_redis_unavailable says: a batch could not be settled later.
    if (isRedisUnavailable(e)) throw budgetUnavailable();
    throw e;
  }
  if (r.chosen === 'duplicate') throw new Error(`request id ${requestId} reserved twice`);
  const t = r.totals;
  if (r.chosen < 0) {
    metrics.budgetRefusals.inc({ tenant: ready.label(ctx.tenantId) });
    throw budgetExhausted({
      tenant: ctx.tenantId,
      period: c.period,
      periodEndMs: period.endMs,
      caps: budget.caps,
      totals: t,
      now,
    });
  }
  const open: OpenBatch = {
    v: 1,
    requestId,
    period: period.id,
    periodEndMs: period.endMs,
    model: summary.model,
    price,
    promptTokens: p,
    completionTokens: done,
    lines: summary.lines,
  };
  await keepAnswer(kong, request, { v: 1, batch: 'create', open });
  const caps = budget.caps;
  const shown: MeterState = {
    v: 1,
    requestId,
    tenant: ctx.tenantId,
    period: period.id,
    periodEndMs: period.endMs,
    modelAsked: summary.model,
    modelServed: summary.model,
    downgrade: 'none',
    stream: false,
    promptTokens: p,
    maxTokensPerChoice: done,
    n: 1,
    price,
    reserved: true,
  };
  await kong.response.setHeaders(
    budgetHeaders(shown, {
      tokens: caps.tokens === null ? null : caps.tokens - t.usedTokens - t.reservedTokens,
      cost: caps.cost === null ? null : caps.cost - t.usedCost - t.reservedCost,
    }),
  );
  metrics.requests.inc({ tenant: ready.label(ctx.tenantId), outcome: 'batch_reserved' });
}
