/**
 * The log phase: each request settled exactly once per request id (budget-settle-4.lua), from
 * the usage Kong's post-function read in body_filter (usage-snippet.lua) into its ledger entry;
 * or released, nothing billed, when nothing was served; or, for a tenant-cache hit (its access
 * never ran here), a ledger entry of 0 upstream tokens. Each committed by commit.ts.
 */
import { recordCapture } from '../../lib/capture/recorder'; // capture (issue 23)
import { CACHE_STATUS_KEY, CACHE_STATUS_SLOT, decodeCacheStatus } from '../../lib/cache/status';
import { type KongPdk } from '../../lib/pdk/kong';
import { readServedFacts, sourceOf } from '../../lib/pluginserver/log-facts';
import type { TenantContext } from '../../lib/tenant/context';
import { findRequest, type TenantRequest } from '../../lib/tenant/read';
import { decodeUsage, USAGE_KEY } from '../../lib/tokens/usage';
import { commit, release } from './commit';
import { ledgerFields, type LedgerEntry } from './ledger';
import * as metrics from './metrics';
import { periodAt } from './period';
import { costOf, NANO_USD_PER_USD, type TokenPrice } from './pricing';
import { resolveBudget } from './policy';
import { estimates, type Ready } from './ready';
import { decodeMeterState, METER_STATE_KEY, PLUGIN_NAME, type MeterState } from './state';
import { settleTransformer } from './transformer-line';

/** The log phase of a request. */
export async function settle(ready: Ready, kong: KongPdk): Promise<void> {
  // The tenant first, from the request's scope when this process has it: a request refused
  // before tenant-auth published a context (its 400s) has none, and is no error here.
  const request = await findRequest(kong, PLUGIN_NAME);
  if (!request) return;
  const { tenant: ctx, scope } = request;
  // capture (issue 23): seal an opted-in request and its outcome into Redis (lib/capture/recorder.ts)
  const c = ready.config;
  await recordCapture(kong, request, c.capture, ready.keys, ready.redis, c.metrics_max_tenants);
  const rawState = await kong.ctx.shared.get(METER_STATE_KEY);
  const state = decodeMeterState(rawState);
  if (!state) {
    // A batch, its input file or a read of it (batch/meter.ts, loaded only for those).
    if (typeof rawState === 'string' && rawState.startsWith('{"v":1,"batch":')) {
      const b = await import('./batch/settle');
      const batch = b.decodeBatchState(rawState);
      if (batch) await b.settleBatchCall(ready, kong, ctx, batch);
      return;
    }
    // Not metered in access: a cache hit (tenant-cache answered before us) is recorded. The
    // status is in the scope when tenant-cache ran in this process; else ctx.shared, the
    // contract any plugin answering from a cache may write (a test fixture does).
    const status =
      scope.get(CACHE_STATUS_SLOT) ??
      decodeCacheStatus(await kong.ctx.shared.get(CACHE_STATUS_KEY));
    if (status === 'hit') await settleCacheHit(ready, kong, request);
    return;
  }
  if (state.tenant !== ctx.tenantId) {
    void kong.log.err('token-meter: meter state and tenant context disagree; not settled');
    return;
  }
  await settleMetered(ready, kong, ctx, state);
}

async function settleMetered(
  ready: Ready,
  kong: KongPdk,
  ctx: TenantContext,
  state: MeterState,
): Promise<void> {
  const account = { tenant: ctx.tenantId, period: state.period, periodEndMs: state.periodEndMs };
  const usage = decodeUsage(await kong.ctx.shared.get(USAGE_KEY));
  const status = await kong.response.getStatus();
  const tenantLabel = ready.label(ctx.tenantId);
  // Kong's ai-request-transformer spent tokens of its own for this request, whatever came after.
  await settleTransformer(ready, kong, account, state, status, tenantLabel);
  const ok = status >= 200 && status < 300;
  if (!usage && (!ok || (await kongAnsweredForUpstream(kong)))) {
    // An error or a refusal after us, or Kong's own error body in place of an answer the
    // upstream cut: nothing billed, the reservation is released.
    await release(ready, account, state.requestId);
    metrics.requests.inc({ tenant: tenantLabel, outcome: ok ? 'upstream_cut' : 'released' });
    return;
  }
  const counts = usage
    ? {
        promptTokens: usage.promptTokens,
        completionTokens: usage.completionTokens,
        cachedTokens: usage.cachedTokens,
      }
    : {
        // No usage (upstream sent none, client aborted): the tokenizer's prompt count and
        // the completion bound the request was held to; flagged as estimated.
        promptTokens: state.promptTokens,
        completionTokens: state.maxTokensPerChoice * state.n,
        cachedTokens: 0,
      };
  const cost = costOf(state.price, counts);
  const entry: LedgerEntry = {
    ts: Date.now(),
    modelAsked: state.modelAsked,
    modelServed: state.modelServed,
    ...counts,
    cost,
    cacheHit: false,
    estimated: !usage,
    downgrade: state.downgrade,
    stream: state.stream,
    status,
  };
  const used = await commit(ready, account, {
    requestId: state.requestId,
    tokens: counts.promptTokens + counts.completionTokens,
    cost,
    ledger: ledgerFields(entry),
  });
  metrics.requests.inc({ tenant: tenantLabel, outcome: usage ? 'metered' : 'estimated' });
  const model = state.modelServed;
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'prompt' }, counts.promptTokens);
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'completion' }, counts.completionTokens);
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'cached' }, counts.cachedTokens);
  metrics.cost.inc({ tenant: tenantLabel, model }, cost / NANO_USD_PER_USD);
  if (!used) return;
  const caps = resolveBudget(ready.config, ctx)?.caps;
  if (caps?.tokens) {
    metrics.budgetUsedRatio.set(
      { tenant: tenantLabel, dimension: 'tokens' },
      used.usedTokens / caps.tokens,
    );
  }
  if (caps?.cost) {
    metrics.budgetUsedRatio.set(
      { tenant: tenantLabel, dimension: 'cost' },
      used.usedCost / caps.cost,
    );
  }
}

/**
 * A 2xx without usage that was not the upstream's answer (kong.response.get_source() is
 * "exit"): a plugin after us, or Kong itself, answered. The case that happens: the upstream
 * cut a buffered (non-streamed) answer after its status line, and kong/init.lua (3.9.3,
 * Kong.response, `res.truncated`) kept the upstream's status and had kong/error_handlers.lua
 * answer with kong.response.exit, "The upstream server responded with 200". The client got no
 * answer, so nothing is billed. Asked only on this rare path (the facts cost an exchange where
 * kong.yml's log snippet is not on the route). A cache hit, which exits before us, is settled
 * elsewhere (no meter state).
 */
async function kongAnsweredForUpstream(kong: KongPdk): Promise<boolean> {
  return (await sourceOf(kong, await readServedFacts(kong))) === 'exit';
}

async function settleCacheHit(
  ready: Ready,
  kong: KongPdk,
  { tenant: ctx, scope }: TenantRequest,
): Promise<void> {
  // The saved log facts (one batched read) where kong.yml's log snippet is on the route, else
  // the serializer's: the request id (the settlement's idempotency key) and the status.
  const served = await readServedFacts(kong);
  const requestId = served.requestId;
  if (requestId === null) return;
  const { decodeEstimate, keptEstimate, ESTIMATE_KEY } = await estimates();
  const estimate = keptEstimate(scope) ?? decodeEstimate(await kong.ctx.shared.get(ESTIMATE_KEY));
  const now = Date.now();
  const period = periodAt(ready.config.period, now);
  // The served model: tenant-auth's decision on a tiered plan, else what the body named.
  const model = ctx.model?.served ?? estimate?.model ?? '';
  const zero: TokenPrice = { prompt: 0, completion: 0, cachedPrompt: 0 };
  const entry: LedgerEntry = {
    ts: now,
    modelAsked: ctx.model?.requested ?? model,
    modelServed: model,
    promptTokens: 0,
    completionTokens: 0,
    cachedTokens: 0,
    cost: costOf(zero, { promptTokens: 0, completionTokens: 0, cachedTokens: 0 }),
    cacheHit: true,
    estimated: false,
    downgrade: 'none',
    stream: estimate?.stream ?? false,
    // The serializer's status is 0 when it could not be read: a hit is served with 200.
    status: served.status > 0 ? served.status : 200,
  };
  const account = { tenant: ctx.tenantId, period: period.id, periodEndMs: period.endMs };
  await commit(ready, account, {
    requestId,
    tokens: 0,
    cost: 0,
    ledger: ledgerFields(entry),
  });
  metrics.requests.inc({ tenant: ready.label(ctx.tenantId), outcome: 'cache_hit' });
}
