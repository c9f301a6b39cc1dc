/**
 * The budget headers token-meter answers with: on every metered request it lets through (what
 * was reserved, served and is left) and on its 429 (exhausted, and when the budget resets).
 */
import { modelHeaders } from '../../lib/tenant/headers';
import { NANO_USD_PER_USD } from './pricing';
import type { MeterState } from './state';

const STATE = 'X-Budget-State';
const RESET = 'X-Budget-Reset';

/** What the tenant's budget still holds after the reservation; null: no cap, or not checked. */
export interface Remaining {
  readonly tokens: number | null;
  /** nano-USD */
  readonly cost: number | null;
}

/** The period's reset time, as the headers and the 429's message give it. */
export function resetOf(periodEndMs: number): string {
  return new Date(periodEndMs).toISOString();
}

/** The headers of a request let through, from what access passes to log. */
export function budgetHeaders(state: MeterState, remaining: Remaining): Record<string, string> {
  const headers: Record<string, string> = {
    [STATE]: !state.reserved ? 'unchecked' : state.downgrade === 'none' ? 'ok' : state.downgrade,
    ...modelHeaders(state.modelAsked, state.modelServed),
    [RESET]: resetOf(state.periodEndMs),
  };
  if (remaining.tokens !== null) headers['X-Budget-Remaining-Tokens'] = String(remaining.tokens);
  if (remaining.cost !== null) {
    headers['X-Budget-Remaining-Usd'] = (remaining.cost / NANO_USD_PER_USD).toFixed(6);
  }
  return headers;
}

/** The headers of the 429 budget_exhausted. */
export function exhaustedHeaders(periodEndMs: number): Record<string, string> {
  return { [STATE]: 'exhausted', [RESET]: resetOf(periodEndMs) };
}
