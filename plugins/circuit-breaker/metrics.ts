/**
 * circuit-breaker's Prometheus metrics, on the plugin server's per-process registry. All of
 * them are per gateway node: breakers and bulkheads live in this process.
 * `upstream` is a configured upstream name or `service:<name>`; `tenant` is bounded, and is
 * `*` on the state of a breaker shared by every tenant of an upstream.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import { registry, TenantLabels } from '../../lib/metrics/registry';
import type { TenantId } from '../../lib/tenant/tenant-id';

export const breakerState = new Gauge({
  name: 'circuit_breaker_state',
  help: 'Breaker state by upstream and tenant: 0 closed, 1 open, 2 half-open.',
  labelNames: ['upstream', 'tenant'] as const,
  registers: [registry],
});

export const transitions = new Counter({
  name: 'circuit_breaker_transitions_total',
  help: 'Breaker state changes by upstream, tenant and the state entered.',
  labelNames: ['upstream', 'tenant', 'to'] as const,
  registers: [registry],
});

export const shortCircuited = new Counter({
  name: 'circuit_breaker_short_circuited_total',
  help: 'Requests answered 503 at once because their breaker was open or probing, by upstream, tenant and state.',
  labelNames: ['upstream', 'tenant', 'state'] as const,
  registers: [registry],
});

export const bulkheadRejections = new Counter({
  name: 'circuit_breaker_bulkhead_rejections_total',
  help: 'Requests refused by the tenant bulkhead, by tenant and reason (full, queue_timeout).',
  labelNames: ['tenant', 'reason'] as const,
  registers: [registry],
});

export const bulkheadQueued = new Counter({
  name: 'circuit_breaker_bulkhead_queued_total',
  help: 'Requests that waited in the tenant bulkhead queue before getting a slot, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

type BulkheadUsage = () => Iterable<{ tenant: TenantId; inFlight: number; queued: number }>;
let bulkheadUsage: BulkheadUsage | null = null;
/** What the bulkhead gauges read at scrape time (the process's Bulkheads). */
export function observeBulkheads(read: BulkheadUsage): void {
  bulkheadUsage = read;
}

/**
 * Read at scrape time, not kept up to date per request: occupancy is what a dashboard wants,
 * and a slot that is never released (a leak) shows here until its slot_ttl_ms ends.
 */
function bulkheadGauge(
  name: string,
  help: string,
  pick: (u: { inFlight: number; queued: number }) => number,
) {
  return new Gauge({
    name,
    help,
    labelNames: ['tenant'] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!labels || !bulkheadUsage) return;
      for (const u of bulkheadUsage()) this.inc({ tenant: labels.label(u.tenant) }, pick(u));
    },
  });
}

export const bulkheadInFlight = bulkheadGauge(
  'circuit_breaker_bulkhead_in_flight',
  'Upstream calls holding a slot of the tenant bulkhead on this node, by tenant.',
  (u) => u.inFlight,
);

export const bulkheadWaiting = bulkheadGauge(
  'circuit_breaker_bulkhead_queued',
  'Requests waiting in the tenant bulkhead queue on this node, by tenant.',
  (u) => u.queued,
);

export const fallbacks = new Counter({
  name: 'circuit_breaker_fallbacks_total',
  help: 'Requests routed to the fallback upstream because the primary breaker refused, by primary upstream, fallback and tenant.',
  labelNames: ['upstream', 'fallback', 'tenant'] as const,
  registers: [registry],
});

export const outcomes = new Counter({
  name: 'circuit_breaker_outcomes_total',
  help: 'Finished upstream calls by upstream, tenant and outcome (success, upstream_5xx, upstream_429, upstream_timeout, refused_by_plugin, lost, ...).',
  labelNames: ['upstream', 'tenant', 'outcome'] as const,
  registers: [registry],
});

export const upstreamLatency = new Histogram({
  name: 'circuit_breaker_upstream_latency_seconds',
  help: 'Time to the upstream response headers (the serializer latencies.proxy), by upstream.',
  labelNames: ['upstream'] as const,
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers: [registry],
});

/**
 * A tenant's requests end to end, as Kong measured them (the serializer's `latencies.request`:
 * first byte in to last byte out, the upstream's answer and the chain included), for the
 * requests this plugin let through to an upstream. Per tenant: the objective a tenant is
 * promised (docker/prometheus/rules/tenant-slo.yml, TenantLatencyP99High).
 */
export const requestDuration = new Histogram({
  name: 'circuit_breaker_request_duration_seconds',
  help: 'Duration of a tenant request sent to an upstream, end to end (the serializer latencies.request), by tenant.',
  labelNames: ['tenant'] as const,
  buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  registers: [registry],
});

export const refusals = new Counter({
  name: 'circuit_breaker_refusals_total',
  help: 'Requests circuit-breaker refused, by reason (the error code) and status.',
  labelNames: ['reason', 'status'] as const,
  registers: [registry],
});

let labels: TenantLabels | null = null;
/** The bounded tenant label mapper; the bound comes from the first instance's config. */
export function tenantLabels(maxTenants: number): TenantLabels {
  labels ??= new TenantLabels(maxTenants);
  return labels;
}

export const STATE_VALUE = { closed: 0, open: 1, half_open: 2 } as const;
