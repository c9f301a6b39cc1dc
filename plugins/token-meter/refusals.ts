/**
 * Every refusal token-meter answers, as OpenAI-style errors (lib/http/errors.ts); the table in
 * the README lists them. guardPhase (lib/plugin/phase.ts) sends them and counts each in
 * token_meter_refusals_total by code and status.
 */
import { GatewayError } from '../../lib/http/errors';
import { misconfigured } from '../../lib/plugin/define';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type { BudgetCaps, BudgetTotals } from './budget';
import { exhaustedHeaders, resetOf } from './headers';
import { NANO_USD_PER_USD } from './pricing';
import type { ModelKind, Period } from './config';

/** The plugin kit's one misconfigured refusal (also for a plan with no budget). */
export const MISCONFIGURED = misconfigured('token-meter');

/** A 400 for a body or a query the meter cannot take; `param` names the field at fault. */
export function invalidRequest(
  code: string,
  message: string,
  param: string | null = null,
): GatewayError {
  return new GatewayError({ status: 400, type: 'invalid_request_error', code, message, param });
}

export function requestTooLarge(maxBytes: number): GatewayError {
  return new GatewayError({
    status: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
    message: `request bodies over ${maxBytes} bytes are not metered here`,
  });
}

/** A model without a price is never free (`unknown_model: refuse`). */
export function modelNotPriced(model: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'model_not_priced',
    message: `the model '${model}' has no price on this gateway`,
    param: 'model',
  });
}

/** The refusal of a model used on an API its declared kind does not serve. */
export function wrongKind(model: string, kind: ModelKind): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'model_not_supported',
    message:
      kind === 'embedding'
        ? `the model '${model}' is an embedding model: it serves the embeddings API only`
        : `the model '${model}' is a generation model: it does not serve the embeddings API`,
    param: 'model',
  });
}

/** Why nothing on the ladder fit: the tenant's period and its numbers. */
export interface Exhaustion {
  readonly tenant: TenantId;
  readonly period: Period;
  readonly periodEndMs: number;
  readonly caps: BudgetCaps;
  readonly totals: BudgetTotals;
  readonly now: number;
}

/** The hard cap: one typed error; the numbers are the tenant's own (it is the caller). */
export function budgetExhausted(x: Exhaustion): GatewayError {
  const { caps, totals: t } = x;
  const parts: string[] = [];
  if (caps.tokens !== null) {
    parts.push(`${t.usedTokens} of ${caps.tokens} tokens used, ${t.reservedTokens} in flight`);
  }
  if (caps.cost !== null) {
    parts.push(
      `$${(t.usedCost / NANO_USD_PER_USD).toFixed(4)} of $${(caps.cost / NANO_USD_PER_USD).toFixed(2)} spent`,
    );
  }
  return new GatewayError({
    status: 429,
    type: 'insufficient_quota',
    code: 'budget_exhausted',
    message: `the ${x.period}ly budget of tenant ${x.tenant} does not cover this request (${parts.join('; ')}); it resets at ${resetOf(x.periodEndMs)}`,
    retryAfterSeconds: Math.ceil((x.periodEndMs - x.now) / 1000),
    headers: exhaustedHeaders(x.periodEndMs),
  });
}

/** Redis cannot reserve and `on_redis_unavailable = refuse`. */
export function budgetUnavailable(): GatewayError {
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: 'budget_unavailable',
    message: 'the budget store is unavailable; the request was not forwarded',
    retryAfterSeconds: 2,
  });
}

/** Showback cannot read the ledger. */
export function ledgerUnavailable(): GatewayError {
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: 'ledger_unavailable',
    message: 'the usage ledger is unavailable; try again shortly',
    retryAfterSeconds: 2,
  });
}

/** `POST /fine_tuning/jobs` on a metered route: its training is spent later, unreserved. */
export function unmeteredTraining(): GatewayError {
  return new GatewayError({
    status: 403,
    type: 'permission_error',
    code: 'fine_tuning_not_metered',
    message:
      'a fine-tuning job spends its training tokens later, at the provider, where this gateway cannot reserve them against your budget first: it is not served on a metered route',
  });
}
