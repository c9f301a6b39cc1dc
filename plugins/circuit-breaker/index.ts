/**
 * circuit-breaker: the last of our plugins before the proxy. Routes each tenant to its plan's
 * or its own upstream, fails fast while that upstream's breaker is open (503 + Retry-After,
 * or the plan's fallback upstream), and caps each tenant's upstream calls in flight on this
 * node (bulkhead), so one tenant's failing or hanging upstream cannot drag the others.
 * Outcomes are recorded in `log`, where Kong says who answered and how.
 *
 * Its PDK calls per request are stated once, in the README ("PDK calls per phase"), and held
 * there by test/harness/circuit-breaker-pdk-calls.test.ts.
 */
import { definePlugin, startUpOf } from '../../lib/plugin/define';
import { type KongPdk } from '../../lib/pdk/kong';
import { readConfig } from '../../lib/schema/config';
import { readRequest } from '../../lib/tenant/read';
import { isChainProcess } from '../../lib/request/scope-store';
import { SEAT_HAND_OFF, markSeatTaker, routeKeyOf } from '../../lib/request/seat';
import type { Admission } from './breakers';
import { direct } from './direct';
import { bulkheads, choose, record, track, type InFlight } from './in-flight';
import * as metrics from './metrics';
import { NO_SERVICE, bulkheadFull, shortCircuit } from './refusals';
import { resolveRoute, serviceTarget, settingsFingerprint } from './routing';
import { Schema, checkConfig, type CircuitBreakerConfig } from './schema';

/** A ready instance: its config, and what its breakers are keyed by. */
interface Ready {
  readonly config: CircuitBreakerConfig;
  /** Breakers are shared by instances with the same settings (routing.ts). */
  readonly fingerprint: string;
  /** The route and service this instance is configured on (lib/request/seat.ts). */
  readonly routeKey: string;
}

export const { Name, Version, Priority, Plugin } = definePlugin<Ready>({
  name: 'circuit-breaker',
  version: '0.1.0',
  /** The last of ours before the proxy: after retrieval-injector (790) and Kong's ai-proxy (770). */
  priority: 600,
  schema: Schema,
  startUp: (raw) =>
    startUpOf(() => {
      const config = readConfig(Schema, raw);
      checkConfig(config);
      return { config, fingerprint: settingsFingerprint(config), routeKey: routeKeyOf(raw) };
    }),
  metricsAt: (r) => ({ port: r.config.metrics_port, host: r.config.metrics_host }),
  access: admit,
  onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
  // Outcomes: Kong says who answered and how. In the co-hosted process the chain's log phase
  // runs `record` instead (lib/request/chain-log.ts).
  log: (_ready, kong) => record(kong),
});
export { Schema };

export { FALLBACK_HEADER, FALLBACK_MODEL_HEADER, STATE_HEADER } from './refusals';

async function admit(ready: Ready, kong: KongPdk): Promise<void> {
  const { config } = ready;
  const { tenant: ctx, scope } = await readRequest(kong, Name);
  const tenantLabel = metrics.tenantLabels(config.metrics_max_tenants).label(ctx.tenantId);
  const route = resolveRoute(config, ctx);
  let primary = route.primary;
  if (primary === null) {
    const svc = await kong.router.getService();
    if (!svc || typeof svc.host !== 'string') throw NO_SERVICE;
    primary = serviceTarget(svc, config.service_breaker_scope);
  }

  const chosen = choose(ready, ctx, tenantLabel, primary, route.fallback);
  // Read before the seat: under load a PDK exchange made after the fair queue's grant costs
  // about a millisecond on every seat hand-off, the upstream idle meanwhile (measured: 1.27 ms
  // p50 of a 4.4 ms hand-off). Where token-meter ran first it is already in the scope.
  const requestId = await scope.requestId(kong);
  if (requestId === '') {
    throw new Error('no kong_request_id: cannot match this request to its log event');
  }
  if (isChainProcess()) {
    // tenant-ratelimit on this route leaves later requests' seats to us (lib/request/seat.ts).
    markSeatTaker(ready.routeKey);
    // The shared upstream's seat, taken now that the upstream is chosen: a request answered
    // before us never took one. Before the bulkhead, in the order the seat was always
    // taken (tenant-ratelimit ran before us): a tenant's own waiters queue in the fair queue.
    await scope.get(SEAT_HAND_OFF)?.take(kong, {
      label: chosen.target.label,
      service: !chosen.target.direct,
    });
  }
  const b = config.bulkhead;
  const got = await bulkheads.acquire(
    ctx.tenantId,
    route.maxInFlight,
    b.queue,
    b.queue_timeout_ms,
    b.slot_ttl_ms,
  );
  if (!got.ok) {
    metrics.bulkheadRejections.inc({ tenant: tenantLabel, reason: got.reason });
    throw bulkheadFull(got.reason, b.retry_after_seconds);
  }
  if (got.queued) metrics.bulkheadQueued.inc({ tenant: tenantLabel });

  // The breaker may have changed while the request waited in the queue.
  const admission: Admission = chosen.breaker.admit();
  if (!admission.admitted) {
    got.slot.release();
    metrics.shortCircuited.inc({
      upstream: chosen.target.label,
      tenant: tenantLabel,
      state: admission.state,
    });
    throw shortCircuit(admission.state, admission.retryAfterMs);
  }
  let finish: InFlight['finish'] | null = null;
  try {
    finish = track(config, requestId, chosen, tenantLabel, admission, got.slot);
    // In the co-hosted process the chain's log phase records the outcome (lib/request/chain-log.ts).
    if (isChainProcess() && scope.findable) {
      scope.defer({ plugin: Name, order: 1, run: record });
    }
    await direct(kong, scope, chosen, route.fallbackModel, config.max_body_bytes);
  } catch (e) {
    // The request will not reach the upstream through us: free what it holds now.
    if (finish) finish('refused_by_plugin', -1);
    else {
      admission.settle({ kind: 'none', reason: 'refused_by_plugin' });
      got.slot.release();
    }
    throw e;
  }
}
