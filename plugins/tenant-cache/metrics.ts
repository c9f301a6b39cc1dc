/** tenant-cache's Prometheus metrics, on the plugin server's per-process registry. */
import { Counter, Histogram } from 'prom-client';
import { registry, TenantLabels } from '../../lib/metrics/registry';

export const lookups = new Counter({
  name: 'tenant_cache_requests_total',
  help: 'Requests seen by tenant-cache, by tenant, status (hit, miss, bypass) and reason.',
  labelNames: ['tenant', 'status', 'reason'] as const,
  registers: [registry],
});

export const stores = new Counter({
  name: 'tenant_cache_stores_total',
  help: 'Cacheable misses after the response, by tenant and outcome (stored, or the reason it was not).',
  labelNames: ['tenant', 'outcome'] as const,
  registers: [registry],
});

export const missAnswers = new Counter({
  name: 'tenant_cache_miss_answers_total',
  help: "Cacheable misses by how their answer reaches the store: kept (passed through, kept by kong.yml's capture snippet) or buffered (Kong's buffered proxying: the route lacks the snippet, or this instance has not yet seen it keep one).",
  labelNames: ['source'] as const,
  registers: [registry],
});

export const storedBytes = new Counter({
  name: 'tenant_cache_stored_bytes_total',
  help: 'Response bytes (decoded, before encryption) written to the cache, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const servedBytes = new Counter({
  name: 'tenant_cache_served_bytes_total',
  help: 'Response bytes answered from the cache, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const decryptAlarms = new Counter({
  name: 'tenant_cache_decrypt_alarms_total',
  help: 'Entries under a tenant’s key that failed authenticated decryption (tampered, planted or moved), served as misses.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const redisFailures = new Counter({
  name: 'tenant_cache_redis_failures_total',
  help: 'Redis calls that failed or missed their deadline, by operation (lookup, store); the request carried on as a miss.',
  labelNames: ['op'] as const,
  registers: [registry],
});

export const semanticLookups = new Counter({
  name: 'tenant_cache_semantic_lookups_total',
  help: 'Semantic-cache lookups after an exact miss, by tenant and outcome (hit, miss, below_threshold, stale, alarm, unavailable, timeout).',
  labelNames: ['tenant', 'outcome'] as const,
  registers: [registry],
});

export const semanticStores = new Counter({
  name: 'tenant_cache_semantic_stores_total',
  help: 'Semantic-cache stores from the log phase, by tenant and outcome (stored, too_large, unavailable, timeout).',
  labelNames: ['tenant', 'outcome'] as const,
  registers: [registry],
});

export const semanticSimilarity = new Histogram({
  name: 'tenant_cache_semantic_similarity',
  help: 'Cosine similarity of the best stored question of the scope to the new one, per lookup that found a row.',
  labelNames: ['tenant'] as const,
  buckets: [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 1],
  registers: [registry],
});

export const semanticLookupSeconds = new Histogram({
  name: 'tenant_cache_semantic_lookup_seconds',
  help: "Time of one semantic lookup on the request path (the question's embedding and the Milvus search, whatever their outcome), per tenant.",
  labelNames: ['tenant'] as const,
  buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

let labels: TenantLabels | null = null;
/** The bounded tenant label mapper; the bound comes from the first instance's config. */
export function tenantLabels(maxTenants: number): TenantLabels {
  labels ??= new TenantLabels(maxTenants);
  return labels;
}
