/** tenant-auth's Prometheus metrics, on the plugin server's per-process registry. */
import { Counter } from 'prom-client';
import { registry, TenantLabels } from '../../lib/metrics/registry';

export const authenticated = new Counter({
  name: 'tenant_auth_requests_total',
  help: 'Requests for which tenant-auth established a tenant, by tenant, plan and identity source.',
  labelNames: ['tenant', 'plan', 'source'] as const,
  registers: [registry],
});

export const refusals = new Counter({
  name: 'tenant_auth_refusals_total',
  help: 'Requests tenant-auth refused, by reason (the error code) and status.',
  labelNames: ['reason', 'status'] as const,
  registers: [registry],
});

export const spoofedHeaders = new Counter({
  name: 'tenant_auth_spoofed_headers_total',
  help: 'Client-sent gateway-owned headers removed before proxying, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const toolsStripped = new Counter({
  name: 'tenant_auth_tools_stripped_total',
  help: 'Tools removed from chat requests because the tenant is not granted them, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const personaApplied = new Counter({
  name: 'tenant_auth_persona_applied_total',
  help: 'Chat requests that received the tenant persona, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const guardRefusals = new Counter({
  name: 'tenant_auth_guard_refusals_total',
  help: 'Requests refused by the content guard of their plan or tenant, by tenant and verdict (denied, not_allowed, unverifiable).',
  labelNames: ['tenant', 'verdict'] as const,
  registers: [registry],
});

export const modelDecisions = new Counter({
  name: 'tenant_auth_model_decisions_total',
  help: 'Model decisions on tiered plans, by tenant and decision (as_asked, normalised, alias, default, rewritten).',
  labelNames: ['tenant', 'decision'] as const,
  registers: [registry],
});

export const modelListings = new Counter({
  name: 'tenant_auth_model_listings_total',
  help: 'GET /v1/models (list) and /v1/models/{id} (retrieve) answered from the tier, by tenant, kind and status.',
  labelNames: ['tenant', 'kind', 'status'] as const,
  registers: [registry],
});

export const storedObjects = new Counter({
  name: 'tenant_auth_stored_objects_total',
  help: 'Objects the provider keeps, for tenants on `store: scoped`, by tenant, kind (response, chat_completion, file, batch) and outcome (recorded, forgotten, listed, refused: not the tenant’s, unrecorded: made but no id found in the answer).',
  labelNames: ['tenant', 'kind', 'outcome'] as const,
  registers: [registry],
});

let labels: TenantLabels | null = null;
/** The bounded tenant label mapper; the bound comes from the first instance's config. */
export function tenantLabels(maxTenants: number): TenantLabels {
  labels ??= new TenantLabels(maxTenants);
  return labels;
}
