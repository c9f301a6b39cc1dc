/** token-meter's Prometheus metrics, on the plugin server's per-process registry. */
import { Counter, Gauge } from 'prom-client';
import { registry, TenantLabels } from '../../lib/metrics/registry';

export const tokens = new Counter({
  name: 'token_meter_tokens_total',
  help: 'Tokens settled, by tenant, model served and kind (prompt, completion, cached).',
  labelNames: ['tenant', 'model', 'kind'] as const,
  registers: [registry],
});

export const cost = new Counter({
  name: 'token_meter_cost_usd_total',
  help: 'Cost settled at the configured prices, in USD, by tenant and model served.',
  labelNames: ['tenant', 'model'] as const,
  registers: [registry],
});

export const requests = new Counter({
  name: 'token_meter_requests_total',
  help: 'Requests settled, by tenant and outcome (metered, estimated, cache_hit, released, upstream_cut: a 2xx the gateway wrote in place of an answer the upstream cut, not billed; transformer: the line of ai-request-transformer’s own LLM call; batch_reserved, batch_metered, batch_estimated, batch_released: a batch reserved at creation, then settled from its usage, at its bound, or released).',
  labelNames: ['tenant', 'outcome'] as const,
  registers: [registry],
});

export const downgrades = new Counter({
  name: 'token_meter_downgrades_total',
  help: 'Requests served below what was asked, by tenant and kind (fallback, clamp).',
  labelNames: ['tenant', 'kind'] as const,
  registers: [registry],
});

export const refusals = new Counter({
  name: 'token_meter_refusals_total',
  help: 'Requests token-meter refused, by reason (the error code) and status.',
  labelNames: ['reason', 'status'] as const,
  registers: [registry],
});

export const budgetRefusals = new Counter({
  name: 'token_meter_budget_refusals_total',
  help: 'Requests refused at the hard cap (429 budget_exhausted), by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const budgetUsedRatio = new Gauge({
  name: 'token_meter_budget_used_ratio',
  help: 'Share of the current period budget used (settled), by tenant and dimension (tokens, cost).',
  labelNames: ['tenant', 'dimension'] as const,
  registers: [registry],
});

export const spooled = new Counter({
  name: 'token_meter_spooled_total',
  help: 'Settlements written to the local spool because Redis was unavailable.',
  registers: [registry],
});

export const replayed = new Counter({
  name: 'token_meter_replayed_total',
  help: 'Spooled settlements replayed into Redis, by result (settled, duplicate, failed; corrected: settled over an estimate billed at expiry meanwhile, counted in settled too).',
  labelNames: ['result'] as const,
  registers: [registry],
});

let labels: TenantLabels | null = null;
/** The bounded tenant label mapper; the bound comes from the first instance's config. */
export function tenantLabels(maxTenants: number): TenantLabels {
  labels ??= new TenantLabels(maxTenants);
  return labels;
}

export const lateReleases = new Counter({
  name: 'token_meter_late_releases_total',
  help: 'Reservations released by request id because the reserve script’s reply missed its deadline (refuse mode answered 503 budget_unavailable; the script may still have reserved).',
  registers: [registry],
});

export const expiredSettlements = new Counter({
  name: 'token_meter_expired_settlements_total',
  help: 'Reservations whose log phase never settled them, billed at expiry as estimated (ledger settled_by=expiry), by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});
