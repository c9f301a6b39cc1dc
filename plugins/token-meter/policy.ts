/**
 * Budget policy: which budget applies to a tenant (its plan's, its own override's, or none)
 * and which ladder its request climbs (ladder.ts), from the config and the TenantContext
 * alone: no I/O, so every rule here is tested without a gateway.
 */
import type { TenantContext } from '../../lib/tenant/context';
import type { BudgetCaps } from './budget';
import { ladder, type LadderStep } from './ladder';
import { kindOf, kindServes, NANO_USD_PER_USD, priceOf } from './pricing';
import { modelNotPriced, wrongKind } from './refusals';
import type { MeteredRequest } from './request-body';
import type { TokenMeterConfig } from './config';

export interface ResolvedBudget {
  readonly caps: BudgetCaps;
  readonly softThreshold: number;
  readonly allowDowngrade: boolean;
  readonly allowClamp: boolean;
  readonly minClampTokens: number;
  readonly defaultMaxTokens: number;
}

const own = <T>(table: Record<string, T>, key: string): T | undefined =>
  Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;

/** The tenant's budget; null when its plan has none and `unlisted_plan = refuse`. */
export function resolveBudget(config: TokenMeterConfig, ctx: TenantContext): ResolvedBudget | null {
  const plan = own(config.plans, ctx.plan);
  if (!plan) {
    if (config.unlisted_plan === 'meter_only') {
      return {
        caps: { tokens: null, cost: null },
        softThreshold: 1,
        allowDowngrade: false,
        allowClamp: false,
        minClampTokens: 1,
        defaultMaxTokens: config.default_max_tokens,
      };
    }
    return null;
  }
  const o = own(config.tenants, ctx.tenantId);
  const tokens = o?.budget_tokens ?? plan.budget_tokens;
  const usd = o?.budget_usd ?? plan.budget_usd;
  return {
    caps: { tokens, cost: usd === null ? null : Math.floor(usd * NANO_USD_PER_USD) },
    softThreshold: o?.soft_threshold ?? plan.soft_threshold,
    allowDowngrade: plan.allow_downgrade,
    allowClamp: plan.allow_clamp,
    minClampTokens: plan.min_clamp_tokens,
    defaultMaxTokens: plan.default_max_tokens ?? config.default_max_tokens,
  };
}

/** What a request's ladder is built from. */
export interface LadderAsk {
  readonly ctx: TenantContext;
  readonly budget: ResolvedBudget;
  readonly request: MeteredRequest;
  /** The model that serves the request: tenant-auth's decision on a tiered plan, else the body's. */
  readonly model: string;
  /** The tokenizer's prompt count (the injected-context headroom is added here). */
  readonly promptTokens: number;
}

export interface RequestLadder {
  readonly steps: readonly LadderStep[];
  /** The completion bound per choice the request asks for (0: prompt only). */
  readonly maxTokensPerChoice: number;
}

/**
 * The request's ladder, or a 400: a model without a price, or one whose declared kind does not
 * serve this API (an embedding model never generates, a generation model never embeds; the
 * price table says which, and tenant-auth also refuses names that say `embed`).
 */
export function ladderFor(config: TokenMeterConfig, a: LadderAsk): RequestLadder {
  const { ctx, budget, request: req, model } = a;
  const askedPrice = priceOf(config, model);
  if (!askedPrice) throw modelNotPriced(model);
  const kind = kindOf(config, model);
  if (kind !== null && !kindServes(kind, req.promptOnly)) throw wrongKind(model, kind);
  // The downgrade ladder stays inside the tenant's tier: a fallback outside it is not used.
  const tier = ctx.policy.models;
  const fallbackModel =
    ctx.policy.fallbackModel !== null &&
    (tier.length === 0 || tier.includes(ctx.policy.fallbackModel))
      ? ctx.policy.fallbackModel
      : null;
  const fallbackPrice =
    budget.allowDowngrade &&
    fallbackModel !== null &&
    fallbackModel !== model &&
    kindServes(kindOf(config, fallbackModel), req.promptOnly)
      ? priceOf(config, fallbackModel)
      : undefined;
  const perChoice = req.promptOnly ? 0 : (req.askedMaxTokens ?? budget.defaultMaxTokens);
  const steps = ladder({
    askedModel: model,
    askedPrice,
    fallback:
      fallbackModel !== null && fallbackPrice
        ? { model: fallbackModel, price: fallbackPrice }
        : null,
    allowClamp: budget.allowClamp,
    minClampTokens: budget.minClampTokens,
    softThreshold: budget.softThreshold,
    promptTokens: a.promptTokens + config.context_headroom_tokens,
    choices: req.n,
    maxTokensPerChoice: perChoice,
  });
  return { steps, maxTokensPerChoice: perChoice };
}
