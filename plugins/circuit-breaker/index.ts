/**
 * circuit-breaker: the last of our plugins before the proxy. Routes each tenant to its plan's
 * or its own upstream, fails fast while that upstream's breaker is open (503 + Retry-After,
 * or the plan's fallback upstream), and caps each tenant's upstream calls in flight on this
 * node (bulkhead), so one tenant's failing or hanging upstream cannot drag the others.
 * Outcomes are recorded in `log`, where Kong says who answered and how.
 *
 * PDK calls (each one IPC round trip with Kong):
 *   access: ctx.shared.get, nginx.getVar                                       = 2
 *     + router.getService when the request stays on the service's own target   = 3
 *     + service.setTarget when routed to a configured upstream                  = 3
 *     + service.request.setPath when that upstream has a path                   + 1
 *     + request.getRawBody, service.request.setRawBody when a model is written  + 2
 *     + response.setHeaders when falling back                                  + 1
 *     refusal: response.exit (+ log.err on an unexpected error)
 *   log: ctx.shared.get of the saved log facts (batched with the phase's other reads: 0..1);
 *     where kong.yml's log snippet is not on the route, + log.serialize,
 *     + response.getSource for a request this plugin admitted                   = 1..3
 */
import { serveMetrics } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { readConfig } from '../../lib/schema/config';
import { readRequest } from '../../lib/tenant/read';
import { isChainProcess } from '../../lib/request/scope';
import { SEAT_HAND_OFF, markSeatTaker, routeKeyOf } from '../../lib/request/seat';
import type { Admission } from './breakers';
import { direct } from './direct';
import { bulkheads, choose, record, track, type InFlight } from './in-flight';
import * as metrics from './metrics';
import { MISCONFIGURED, NO_SERVICE, bulkheadFull, shortCircuit } from './refusals';
import { resolveRoute, serviceTarget, settingsFingerprint } from './routing';
import { Schema, checkConfig, type CircuitBreakerConfig } from './schema';

export const Name = 'circuit-breaker';
export const Version = '0.1.0';
/** The last of ours before the proxy: after retrieval-injector (700). */
export const Priority = 600;
export { Schema };

export { FALLBACK_HEADER, FALLBACK_MODEL_HEADER, STATE_HEADER } from './refusals';

export class Plugin {
  readonly config: CircuitBreakerConfig;
  readonly fingerprint: string;
  private readonly misconfigured: string | null = null;
  /** The route and service this instance is configured on (lib/request/seat.ts). */
  private readonly routeKey: string;

  /** Never throws (see tenant-auth): an unusable config refuses each request instead. */
  constructor(raw: unknown) {
    this.config = readConfig<CircuitBreakerConfig>(Schema, raw);
    this.routeKey = routeKeyOf(raw);
    this.fingerprint = settingsFingerprint(this.config);
    try {
      checkConfig(this.config);
      serveMetrics('circuit-breaker', this.config.metrics_port, this.config.metrics_host, (e) => {
        process.stderr.write(
          `circuit-breaker: metrics endpoint ${this.config.metrics_host}:${this.config.metrics_port} failed: ${e.message}\n`,
        );
      });
    } catch (e) {
      this.misconfigured = e instanceof Error ? e.message : String(e);
    }
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'access', (k) => this.admit(k), {
      onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
    });
  }

  async log(kong: unknown): Promise<void> {
    // Nothing here may throw: an exit is not possible in log, and a Lua error there would
    // leave the event hanging. guardPhase is the outer net all the same.
    await guardPhase(kong, Name, 'log', async (k) => {
      try {
        await record(k);
      } catch (e) {
        void k.log.err(`circuit-breaker log: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
  }

  private async admit(kong: KongPdk): Promise<void> {
    const { tenant: ctx, scope } = await readRequest(kong, Name);
    if (this.misconfigured !== null) {
      void kong.log.err(`circuit-breaker is misconfigured, refusing: ${this.misconfigured}`);
      throw MISCONFIGURED;
    }
    const tenantLabel = metrics.tenantLabels(this.config.metrics_max_tenants).label(ctx.tenantId);
    const route = resolveRoute(this.config, ctx);
    let primary = route.primary;
    if (primary === null) {
      const svc = await kong.router.getService();
      if (!svc || typeof svc.host !== 'string') throw NO_SERVICE;
      primary = serviceTarget(svc, this.config.service_breaker_scope);
    }

    const chosen = choose(this, ctx, tenantLabel, primary, route.fallback);
    if (isChainProcess()) {
      // tenant-ratelimit on this route leaves later requests' seats to us (lib/request/seat.ts).
      markSeatTaker(this.routeKey);
      // The shared upstream's seat, taken now that the upstream is chosen: a request answered
      // before us never took one. Before the bulkhead, in the order the seat was always
      // taken (tenant-ratelimit ran before us): a tenant's own waiters queue in the fair queue.
      await scope.get(SEAT_HAND_OFF)?.take(kong, {
        label: chosen.target.label,
        service: !chosen.target.direct,
      });
    }
    const b = this.config.bulkhead;
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
      const requestId = await scope.requestId(kong);
      if (requestId === '') {
        throw new Error('no kong_request_id: cannot match this request to its log event');
      }
      finish = track(this.config, requestId, chosen, tenantLabel, admission, got.slot);
      // In the co-hosted process the chain's log phase records the outcome (lib/request/chain-log.ts).
      if (isChainProcess() && scope.findable) {
        scope.defer({ plugin: Name, order: 1, run: record });
      }
      await direct(kong, scope, chosen, route.fallbackModel, this.config.max_body_bytes);
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
}
