/**
 * Kong's ai-request-transformer calls an LLM of its own, in access, to rewrite the request
 * (issue 21 part 3): tokens the tenant's request spent, though not at the upstream. kong.yml's
 * transform guard (transform-guard.lua) copies Kong's count of that call to
 * `kong.ctx.shared.kta_transform_usage`; here it is billed to the tenant as a ledger line of its
 * own (request id `<id>-t`, settled exactly once like any other), priced as the transformer's
 * model. It was not reserved before the call (the transformer runs after the meter's
 * reservation): the budget may end one transformer call past its cap, never silently — the line
 * is in the ledger and in the metrics. A model without a price is billed at the price of the
 * model the request was reserved for, marked estimated: never free.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import { SHARED_KEYS } from '../../lib/request/shared-keys';
import { decodeUsage } from '../../lib/tokens/usage';
import { commit, type BudgetAccount as Account } from './commit';
import { ledgerFields } from './ledger';
import * as metrics from './metrics';
import { costOf, NANO_USD_PER_USD, priceOf } from './pricing';
import type { Ready } from './ready';
import type { MeterState } from './state';

export const TRANSFORM_USAGE_KEY = SHARED_KEYS.transformUsage.key;

/** The ledger line of the transformer's own call, when the guard saw one. */
export async function settleTransformer(
  ready: Ready,
  kong: KongPdk,
  account: Account,
  state: MeterState,
  status: number,
  tenantLabel: string,
): Promise<void> {
  const usage = decodeUsage(await kong.ctx.shared.get(TRANSFORM_USAGE_KEY));
  if (!usage) return;
  const model = usage.model;
  const own = model === '' ? undefined : priceOf(ready.config, model);
  const counts = {
    promptTokens: usage.promptTokens,
    completionTokens: usage.completionTokens,
    cachedTokens: 0,
  };
  const cost = costOf(own ?? state.price, counts);
  await commit(ready, account, {
    requestId: `${state.requestId}-t`,
    tokens: counts.promptTokens + counts.completionTokens,
    cost,
    ledger: ledgerFields({
      ts: Date.now(),
      modelAsked: model,
      modelServed: model,
      ...counts,
      cost,
      cacheHit: false,
      estimated: own === undefined,
      estimateBasis: 'tokens=kong;price=request_model',
      downgrade: 'none',
      stream: false,
      status,
    }),
  });
  metrics.requests.inc({ tenant: tenantLabel, outcome: 'transformer' });
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'prompt' }, counts.promptTokens);
  metrics.tokens.inc({ tenant: tenantLabel, model, kind: 'completion' }, counts.completionTokens);
  metrics.cost.inc({ tenant: tenantLabel, model }, cost / NANO_USD_PER_USD);
}
