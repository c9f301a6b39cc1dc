/**
 * The typed view of token-meter's validated config: what readConfig returns for schema.ts's
 * fields, defaults applied (unset nullable fields are null), and the cross-field rules Kong's
 * schema cannot state, checked once when an instance starts (ready.ts).
 */
import type { RedisConfig } from '../../lib/schema/typedefs';
import type { CaptureConfig } from '../../lib/capture/recorder';

export type Period = 'month' | 'day' | 'hour';

/** What a model does, so it is only used where it can (null: not declared, any endpoint). */
export type ModelKind = 'generation' | 'embedding';

export interface ModelPrice {
  /** Optional in the type only: the schema fills it (null). */
  kind?: ModelKind | null;
  prompt_per_million: number;
  completion_per_million: number;
  cached_prompt_per_million: number | null;
  long_context: LongContextPrice | null;
}

/** A provider's higher prices for a long prompt (the whole request is billed at them). */
export interface LongContextPrice {
  above_prompt_tokens: number;
  prompt_per_million: number;
  completion_per_million: number;
  cached_prompt_per_million: number | null;
}

export interface PlanBudget {
  budget_tokens: number | null;
  budget_usd: number | null;
  soft_threshold: number;
  allow_downgrade: boolean;
  allow_clamp: boolean;
  min_clamp_tokens: number;
  default_max_tokens: number | null;
}

export interface TenantBudgetOverride {
  budget_tokens: number | null;
  budget_usd: number | null;
  soft_threshold: number | null;
}

export interface TokenMeterConfig {
  redis: RedisConfig;
  period: Period;
  plans: Record<string, PlanBudget>;
  tenants: Record<string, TenantBudgetOverride>;
  unlisted_plan: 'refuse' | 'meter_only';
  prices: Record<string, ModelPrice>;
  unknown_model: 'refuse' | 'default_price';
  default_price: ModelPrice;
  default_max_tokens: number;
  max_tokens_cap: number;
  max_choices: number;
  context_headroom_tokens: number;
  reservation_ttl_seconds: number;
  ledger_retention_days: number;
  on_redis_unavailable: 'refuse' | 'spool';
  spool_dir: string;
  replay_interval_seconds: number;
  expiry_sweep_interval_seconds: number;
  showback: boolean;
  capture: CaptureConfig;
  metrics_port: number;
  metrics_host: string;
  metrics_max_tenants: number;
}

/** Cross-field rules, with the bad value in the message. Throws on the first violation. */
export function checkConfig(c: TokenMeterConfig): void {
  if (c.default_max_tokens > c.max_tokens_cap) {
    throw new Error(
      `default_max_tokens (${c.default_max_tokens}) exceeds max_tokens_cap (${c.max_tokens_cap})`,
    );
  }
  for (const [name, p] of Object.entries(c.plans)) {
    if (p.default_max_tokens !== null && p.default_max_tokens > c.max_tokens_cap) {
      throw new Error(`plans.${name}.default_max_tokens exceeds max_tokens_cap`);
    }
  }
}
