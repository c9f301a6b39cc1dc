/** tenant-ratelimit's Prometheus metrics, on the plugin server's per-process registry. */
import { Counter, Gauge, Histogram } from 'prom-client';
import { registry, TenantLabels } from '../../lib/metrics/registry';

export const admitted = new Counter({
  name: 'tenant_ratelimit_admitted_total',
  help: 'Requests admitted, by tenant, service class (urgent or flex), whether they waited in the fair queue, and the scope of the limiter (cluster, or local-node while Redis was unavailable).',
  labelNames: ['tenant', 'class', 'queued', 'scope'] as const,
  registers: [registry],
});

export const rejected = new Counter({
  name: 'tenant_ratelimit_rejected_total',
  help: 'Requests refused, by tenant, service class (urgent, flex; none when refused before it was known) and reason (the error code).',
  labelNames: ['tenant', 'class', 'reason'] as const,
  registers: [registry],
});

export const queueWait = new Histogram({
  name: 'tenant_ratelimit_queue_wait_seconds',
  help: 'Time admitted requests waited (for upstream capacity; a flex request also for its tenant limits), by tenant and service class (0 when none was needed).',
  labelNames: ['tenant', 'class'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 45],
  registers: [registry],
});

export const waiting = new Gauge({
  name: 'tenant_ratelimit_waiting',
  help: 'Requests waiting in the fair queue on this plugin server, by tenant and service class.',
  labelNames: ['tenant', 'class'] as const,
  registers: [registry],
});

export const inFlight = new Gauge({
  name: 'tenant_ratelimit_in_flight',
  help: 'The tenant’s requests in flight cluster-wide (queued included), as seen at its last admission.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const seatsInUse = new Gauge({
  name: 'tenant_ratelimit_upstream_seats_in_use',
  help: 'Upstream seats in use cluster-wide (capacity in use), by upstream, as seen at the last queue call.',
  labelNames: ['upstream'] as const,
  registers: [registry],
});

export const localDecisions = new Counter({
  name: 'tenant_ratelimit_local_node_decisions_total',
  help: 'Decisions taken by the per-node limiter because Redis was unavailable (on_redis_unavailable=local), by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const rememberedRefusals = new Counter({
  name: 'tenant_ratelimit_remembered_refusals_total',
  help: 'Requests refused (429, requests per minute) from the memory of a refusal Redis gave moments before, without counting their tokens or asking Redis, by tenant.',
  labelNames: ['tenant'] as const,
  registers: [registry],
});

export const usageCorrections = new Counter({
  name: 'tenant_ratelimit_usage_corrections_total',
  help: 'Token charges settled in log, by tenant and kind: refund, charge (usage above the estimate), estimate_kept (no usage observed).',
  labelNames: ['tenant', 'kind'] as const,
  registers: [registry],
});

export const redisErrors = new Counter({
  name: 'tenant_ratelimit_redis_errors_total',
  help: 'Redis calls that failed, by phase (access, queue, log).',
  labelNames: ['phase'] as const,
  registers: [registry],
});

let labels: TenantLabels | null = null;
/** The bounded tenant label mapper; the bound comes from the first instance's config. */
export function tenantLabels(maxTenants: number): TenantLabels {
  labels ??= new TenantLabels(maxTenants);
  return labels;
}

export const redisRoundTrips = new Counter({
  name: 'tenant_ratelimit_redis_round_trips_total',
  help: 'Round trips to Redis this plugin server started, by phase (access, queue, log): one per batch of script calls written together on the one connection, whatever the batch holds.',
  labelNames: ['phase'] as const,
  registers: [registry],
});

export const lateClaims = new Counter({
  name: 'tenant_ratelimit_late_claims_total',
  help: 'Seats granted to a waiter of this plugin server whose claim reached Redis after its window (the seat had gone on): the request went on without a seat, by upstream.',
  labelNames: ['upstream'] as const,
  registers: [registry],
});

export const seatHandOffs = new Counter({
  name: 'tenant_ratelimit_seat_hand_offs_total',
  help: 'Admitted requests whose upstream seat was left for circuit-breaker to take once it chose the upstream (co-hosted chain), by outcome: seated (a seat of queue.upstream), other_upstream (routed elsewhere: no seat of this queue), saturated (no seat in time: 503).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const unseatedRequests = new Counter({
  name: 'tenant_ratelimit_unseated_requests_total',
  help: 'Requests proxied with their seat left for circuit-breaker but never taken (circuit-breaker removed from the route); the route takes seats at admission again after one.',
  registers: [registry],
});
