/**
 * The typed view of token-meter's validated config: what readConfig returns for schema.ts's
 * fields, defaults applied (unset nullable fields are null), and the cross-field rules Kong's
 * schema cannot state, checked once when an instance starts (ready.ts).
 */
import type { ConfigOf } from '../../lib/schema/derive';
import type { Schema } from './schema';

/** The config readConfig returns, read off the schema (lib/schema/derive.ts): they cannot drift. */
export type TokenMeterConfig = ConfigOf<typeof Schema>;
export type Period = TokenMeterConfig['period'];
/** A model's prices; `kind` says what it does, so it is only used where it can (null: every endpoint). */
export type ModelPrice = TokenMeterConfig['default_price'];
/** What a model does (generation or embedding). */
export type ModelKind = NonNullable<ModelPrice['kind']>;
/** A provider's higher prices for a long prompt (the whole request is billed at them). */
export type LongContextPrice = NonNullable<ModelPrice['long_context']>;
export type PlanBudget = TokenMeterConfig['plans'][string];
/** A tenant's override: a null field inherits the plan's. */
export type TenantBudgetOverride = TokenMeterConfig['tenants'][string];

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
