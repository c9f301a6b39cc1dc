/**
 * retrieval-injector metrics, per tenant (bounded label values, lib/metrics/registry.ts).
 */
import { Counter, Histogram } from 'prom-client';
import { TenantLabels, registry } from '../../lib/metrics/registry';

export const searches = new Counter({
  name: 'retrieval_injector_searches_total',
  help: 'Retrieval searches by outcome: hits (context injected), empty (nothing above min score), skipped (dependency down, on_unavailable=skip), refused, integrity.',
  labelNames: ['tenant', 'outcome'],
  registers: [registry],
});

export const hits = new Counter({
  name: 'retrieval_injector_hits_total',
  help: 'Chunks injected into requests.',
  labelNames: ['tenant'],
  registers: [registry],
});

export const emptyResults = new Counter({
  name: 'retrieval_injector_empty_results_total',
  help: 'Searches that found no chunk above the plan minimum score.',
  labelNames: ['tenant'],
  registers: [registry],
});

export const skipped = new Counter({
  name: 'retrieval_injector_skipped_total',
  help: 'Requests that proceeded without context because a dependency was unavailable (on_unavailable=skip).',
  labelNames: ['tenant', 'dependency'],
  registers: [registry],
});

export const unavailable = new Counter({
  name: 'retrieval_injector_unavailable_total',
  help: 'Searches that failed because Milvus or the embeddings endpoint was down or missed its deadline.',
  labelNames: ['tenant', 'dependency'],
  registers: [registry],
});

export const assertionAlarms = new Counter({
  name: 'retrieval_injector_assertion_alarms_total',
  help: 'ALARM: a retrieval returned knowledge that is not the tenant’s own (or unreadable, or of the wrong model); the request was refused.',
  labelNames: ['tenant', 'kind'],
  registers: [registry],
});

export const searchSeconds = new Histogram({
  name: 'retrieval_injector_search_seconds',
  help: 'Time to embed the query and search Milvus, per tenant.',
  labelNames: ['tenant'],
  buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

export const embeddingCache = new Counter({
  name: 'retrieval_injector_embedding_cache_total',
  help: 'Query-embedding cache lookups by result (hit, miss, error, off).',
  labelNames: ['result'],
  registers: [registry],
});

export const refusals = new Counter({
  name: 'retrieval_injector_refusals_total',
  help: 'Requests refused by retrieval-injector, by reason code and status.',
  labelNames: ['reason', 'status'],
  registers: [registry],
});

const labelSets = new Map<number, TenantLabels>();

/** One bounded tenant-label mapping per configured bound, shared by all instances. */
export function tenantLabels(max: number): TenantLabels {
  let l = labelSets.get(max);
  if (!l) {
    l = new TenantLabels(max);
    labelSets.set(max, l);
  }
  return l;
}
