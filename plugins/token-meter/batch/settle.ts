/**
 * The log phase of a batch call (meter.ts has its access): what the provider made is recorded
 * under the tenant (an input file's summary, an open batch), and a finished batch read through
 * the gateway settles its reservation from the provider's `usage`, exactly once (the creation's
 * request id is the settlement's key); one that failed validation is released, one finished
 * without usage is billed at its bound, estimated.
 */
import { SHARED_KEYS } from '../../../lib/request/shared-keys';
import type { KongPdk } from '../../../lib/pdk/kong';
import { decodeSeen, jsonObject, madeId } from '../../../lib/provider-objects/answer';
import type { TenantContext } from '../../../lib/tenant/context';
import { commit, release, type BudgetAccount } from '../commit';
import { ledgerFields } from '../ledger';
import * as metrics from '../metrics';
import { costOf, NANO_USD_PER_USD } from '../pricing';
import type { Ready } from '../ready';
import { OPEN_RECORD_EXTRA_MS, storeOf, type BatchState } from './state';
import type { OpenBatch } from './store';

export { decodeBatchState } from './state';

/** A finished batch: nothing more will run in it. */
const FINISHED = new Set(['completed', 'expired', 'cancelled', 'failed']);

const ANSWER_KEY = SHARED_KEYS.captureAnswer.key;

/** The log phase of a batch call: records what the provider made, or settles a finished batch. */
export async function settleBatchCall(
  ready: Ready,
  kong: KongPdk,
  ctx: TenantContext,
  state: BatchState,
): Promise<void> {
  const status = Number(await kong.response.getStatus());
  const ok = status >= 200 && status < 300;
  const store = await storeOf(ready);
  const tenantLabel = ready.label(ctx.tenantId);
  if (state.batch === 'create' && !ok) {
    const o = state.open;
    await release(ready, accountOf(ctx, o), o.requestId);
    metrics.requests.inc({ tenant: tenantLabel, outcome: 'batch_released' });
    return;
  }
  if (!ok) return;
  const answer = decodeSeen(await kong.ctx.shared.get(ANSWER_KEY));
  if (state.batch === 'upload') {
    const id = answer ? madeId(answer.text) : null;
    if (id !== null) {
      await store.keepInput(ctx, id, state.summary, ready.config.batches.input_ttl_seconds * 1000);
    }
    return;
  }
  if (state.batch === 'create') {
    const id = answer ? madeId(answer.text) : null;
    const ttl = ready.config.batches.reservation_ttl_seconds * 1000 + OPEN_RECORD_EXTRA_MS;
    if (id === null || !(await store.keepOpen(ctx, id, state.open, ttl))) {
      // Nothing can settle it from the batch: it is billed at its bound when it expires.
      void kong.log.warn(
        'token-meter: the provider made a batch but its id was not found in the answer; its reservation is billed at its bound when it expires',
      );
    }
    return;
  }
  // A read: settles when the batch is finished and this tenant has it open.
  const batch = answer?.whole ? jsonObject(answer.text) : null;
  if (!batch || batch.id !== state.id || typeof batch.status !== 'string') return;
  if (!FINISHED.has(batch.status)) return;
  const open = await store.open(ctx, state.id);
  if (!open) return;
  await settleFinished(ready, ctx, state.id, open, batch);
  await store.close(ctx, state.id);
}

function accountOf(ctx: TenantContext, o: OpenBatch): BudgetAccount {
  return { tenant: ctx.tenantId, period: o.period, periodEndMs: o.periodEndMs };
}

/** The provider's `usage` of a batch: its tokens, or null when it reports none. */
export function batchUsage(batch: Record<string, unknown>) {
  const u = batch.usage;
  if (u === null || typeof u !== 'object' || Array.isArray(u)) return null;
  const usage = u as Record<string, unknown>;
  const count = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : null);
  const prompt = count(usage.input_tokens);
  const completion = count(usage.output_tokens);
  if (prompt === null || completion === null) return null;
  const details = usage.input_tokens_details as Record<string, unknown> | null | undefined;
  const cached = count(details?.cached_tokens) ?? 0;
  return { promptTokens: prompt, completionTokens: completion, cachedTokens: cached };
}

async function settleFinished(
  ready: Ready,
  ctx: TenantContext,
  batchId: string,
  open: OpenBatch,
  batch: Record<string, unknown>,
): Promise<void> {
  const account = accountOf(ctx, open);
  const tenantLabel = ready.label(ctx.tenantId);
  const usage = batchUsage(batch);
  if (!usage && batch.status === 'failed') {
    // Failed validation: nothing ran, nothing is billed.
    await release(ready, account, open.requestId);
    metrics.requests.inc({ tenant: tenantLabel, outcome: 'batch_released' });
    return;
  }
  const counts = usage ?? {
    promptTokens: open.promptTokens,
    completionTokens: open.completionTokens,
    cachedTokens: 0,
  };
  const cost = costOf(open.price, counts);
  await commit(ready, account, {
    requestId: open.requestId,
    tokens: counts.promptTokens + counts.completionTokens,
    cost,
    ledger: ledgerFields({
      ts: Date.now(),
      modelAsked: open.model,
      modelServed: open.model,
      ...counts,
      cost,
      cacheHit: false,
      estimated: !usage,
      downgrade: 'none',
      stream: false,
      status: 200,
      batchId,
    }),
  });
  metrics.requests.inc({
    tenant: tenantLabel,
    outcome: usage ? 'batch_metered' : 'batch_estimated',
  });
  const model = open.model;
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'prompt' }, counts.promptTokens);
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'completion' }, counts.completionTokens);
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'cached' }, counts.cachedTokens);
  metrics.cost.inc({ tenant: tenantLabel, model }, cost / NANO_USD_PER_USD);
}
