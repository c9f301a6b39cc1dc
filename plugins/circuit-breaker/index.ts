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
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics } from '../../lib/metrics/registry';
import { type KongPdk } from '../../lib/pdk/kong';
import { guardPhase } from '../../lib/plugin/phase';
import { readConfig } from '../../lib/schema/config';
import type { TenantContext } from '../../lib/tenant/context';
import { readRequest } from '../../lib/tenant/read';
import { isChainProcess, type RequestScope } from '../../lib/request/scope';
import { SEAT_HAND_OFF, markSeatTaker, routeKeyOf } from '../../lib/request/seat';
import { readServedFacts, sourceOf } from '../../lib/pluginserver/log-facts';
import {
  BreakerRegistry,
  type Admission,
  type BreakerListener,
  type UpstreamBreaker,
  type Verdict,
} from './breakers';
import { Bulkheads, type Slot } from './bulkheads';
import * as metrics from './metrics';
import { classify, verdictOf, type OutcomeKind } from './outcome';
import {
  breakerKey,
  resolveRoute,
  serviceTarget,
  settingsFingerprint,
  type Target,
} from './routing';
import { Schema, checkConfig, type BreakerConfig, type CircuitBreakerConfig } from './schema';

export const Name = 'circuit-breaker';
export const Version = '0.1.0';
/** The last of ours before the proxy: after retrieval-injector (700). */
export const Priority = 600;
export { Schema };

/** Response header naming the fallback upstream a request was sent to. */
export const FALLBACK_HEADER = 'X-Circuit-Breaker-Fallback';
export const FALLBACK_MODEL_HEADER = 'X-Circuit-Breaker-Fallback-Model';
export const STATE_HEADER = 'X-Circuit-Breaker-State';

const MISCONFIGURED = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'plugin_misconfigured',
  message: 'circuit-breaker is misconfigured on this route; the request was not forwarded',
});

const NO_SERVICE = new GatewayError({
  status: 503,
  type: 'service_unavailable',
  code: 'no_upstream',
  message: 'no upstream is configured for this request',
});

const listener: BreakerListener = {
  created(b) {
    metrics.breakerState.set({ upstream: b.upstreamLabel, tenant: b.tenantLabel }, 0);
  },
  transition(b, to) {
    metrics.breakerState.set(
      { upstream: b.upstreamLabel, tenant: b.tenantLabel },
      metrics.STATE_VALUE[to],
    );
    metrics.transitions.inc({ upstream: b.upstreamLabel, tenant: b.tenantLabel, to });
  },
};

// Module level: instances are recreated after 60 s idle and per config entry; breakers,
// bulkheads and in-flight calls belong to the process (one per gateway node).
const breakers = new BreakerRegistry(listener);
const bulkheads = new Bulkheads();
metrics.observeBulkheads(() => bulkheads.all());

interface InFlight {
  finish(kind: OutcomeKind, proxyLatencyMs: number, requestLatencyMs?: number): void;
  config: BreakerConfig;
}
/** Admitted requests by Kong request id, until their log event (or a TTL) ends them. */
const inFlight = new Map<string, InFlight>();

/** Seconds for Retry-After: at least 1, so clients never spin. */
function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

function shortCircuit(state: 'open' | 'half_open', retryAfterMs: number): GatewayError {
  const open = state === 'open';
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: open ? 'upstream_circuit_open' : 'upstream_circuit_half_open',
    message: open
      ? `the upstream for this request is unavailable (circuit open after repeated failures); retry after ${seconds(retryAfterMs)} s`
      : 'the upstream for this request is recovering (a probe request is under way); retry shortly',
    retryAfterSeconds: seconds(retryAfterMs),
    headers: { [STATE_HEADER]: open ? 'open' : 'half-open' },
  });
}

interface Chosen {
  target: Target;
  breaker: UpstreamBreaker;
  fallbackFrom: Target | null;
}

export class Plugin {
  private readonly config: CircuitBreakerConfig;
  private readonly fingerprint: string;
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
        await this.record(k);
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

    const chosen = this.choose(ctx, tenantLabel, primary, route.fallback);
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
      throw new GatewayError({
        status: 503,
        type: 'service_unavailable',
        code: 'tenant_bulkhead_full',
        message:
          got.reason === 'full'
            ? 'too many of your requests are in flight to the upstream; retry shortly'
            : 'your requests waited too long for an upstream slot; retry shortly',
        retryAfterSeconds: b.retry_after_seconds,
      });
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
      finish = this.track(requestId, chosen, tenantLabel, admission, got.slot);
      // In the co-hosted process the chain's log phase records the outcome (lib/request/chain-log.ts).
      if (isChainProcess() && scope.findable) {
        scope.defer({ plugin: Name, order: 1, run: (k) => this.record(k) });
      }
      await this.direct(kong, scope, chosen, route.fallbackModel);
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

  /** The primary if its breaker lets requests through, else the fallback, else a 503. */
  private choose(
    ctx: TenantContext,
    tenantLabel: string,
    primary: Target,
    fallback: Target | null,
  ): Chosen {
    const breaker = this.breakerFor(ctx, tenantLabel, primary);
    if (breaker.wouldAdmit()) return { target: primary, breaker, fallbackFrom: null };
    if (fallback !== null) {
      const fb = this.breakerFor(ctx, tenantLabel, fallback);
      if (fb.wouldAdmit()) {
        metrics.fallbacks.inc({
          upstream: primary.label,
          fallback: fallback.label,
          tenant: tenantLabel,
        });
        return { target: fallback, breaker: fb, fallbackFrom: primary };
      }
    }
    const state = breaker.state === 'half_open' ? 'half_open' : 'open';
    metrics.shortCircuited.inc({ upstream: primary.label, tenant: tenantLabel, state });
    throw shortCircuit(state, breaker.retryAfterMs());
  }

  private breakerFor(ctx: TenantContext, tenantLabel: string, target: Target): UpstreamBreaker {
    return breakers.get(
      breakerKey(this.fingerprint, target, ctx),
      target.label,
      target.scope === 'tenant' ? tenantLabel : '*',
      this.config.breaker,
    );
  }

  /** Remembers the admitted call until its log event, with timers for a lost one. */
  private track(
    requestId: string,
    chosen: Chosen,
    tenantLabel: string,
    admission: Admission & { admitted: true },
    slot: Slot,
  ): InFlight['finish'] {
    const config = this.config.breaker;
    const upstream = chosen.target.label;
    let probeTimer: NodeJS.Timeout | undefined;
    const settle = (v: Verdict) => admission.settle(v);
    const finish = (kind: OutcomeKind, proxyLatencyMs: number, requestLatencyMs = -1) => {
      if (!inFlight.delete(requestId)) return;
      clearTimeout(ttlTimer);
      if (probeTimer) clearTimeout(probeTimer);
      settle(verdictOf(kind, config));
      slot.release();
      metrics.outcomes.inc({ upstream, tenant: tenantLabel, outcome: kind });
      if (proxyLatencyMs >= 0) metrics.upstreamLatency.observe({ upstream }, proxyLatencyMs / 1000);
      if (requestLatencyMs >= 0) {
        metrics.requestDuration.observe({ tenant: tenantLabel }, requestLatencyMs / 1000);
      }
    };
    // A lost log event (Kong drops them when its timers saturate) must not hold the slot, nor
    // keep the breaker half-open: the probe gets its own, shorter deadline.
    const ttlTimer = setTimeout(() => finish('lost', -1), this.config.bulkhead.slot_ttl_ms);
    ttlTimer.unref();
    if (admission.probe) {
      probeTimer = setTimeout(
        () => settle({ kind: 'failure', reason: 'probe_timeout' }),
        config.probe_timeout_ms,
      );
      probeTimer.unref();
    }
    inFlight.set(requestId, { finish, config });
    return finish;
  }

  /** Points the request at its target: PDK writes only where something changes. */
  private async direct(
    kong: KongPdk,
    scope: RequestScope,
    chosen: Chosen,
    fallbackModel: string | null,
  ): Promise<void> {
    const t = chosen.target;
    if (t.direct) await kong.service.setTarget(t.host, t.port);
    if (t.path !== null) await kong.service.request.setPath(t.path);
    const model = chosen.fallbackFrom !== null ? (fallbackModel ?? t.model) : t.model;
    if (model !== null) await this.writeModel(kong, scope, model);
    if (chosen.fallbackFrom !== null) {
      await kong.response.setHeaders({
        [FALLBACK_HEADER]: t.label,
        ...(model !== null ? { [FALLBACK_MODEL_HEADER]: model } : {}),
      });
    }
  }

  /** Writes `model` into a JSON object body; other bodies go through unchanged. */
  private async writeModel(kong: KongPdk, scope: RequestScope, model: string): Promise<void> {
    const max = this.config.max_body_bytes;
    const bytes = await scope.rawBody(kong, max);
    if (bytes === null) {
      throw new GatewayError({
        status: 413,
        type: 'invalid_request_error',
        code: 'request_too_large',
        message: `request bodies over ${max} bytes are not accepted on this route`,
      });
    }
    if (bytes.length === 0) return;
    const body = scope.json(bytes);
    if (!body || typeof body !== 'object' || Array.isArray(body)) return;
    const obj = body as Record<string, unknown>;
    if (obj.model === model) return;
    // A copy: the parsed body is the scope's, read by the plugins before us.
    await scope.setBody(kong, JSON.stringify({ ...obj, model }));
  }

  private async record(kong: KongPdk): Promise<void> {
    // The saved facts where kong.yml's log snippet is on the route (no serializer), else the
    // serializer's; who answered is asked only for a request this plugin admitted.
    const served = await readServedFacts(kong);
    if (served.requestId === null) return;
    const entry = inFlight.get(served.requestId);
    if (!entry) return; // not admitted by this plugin (refused earlier, or another node)
    const facts = { ...served, source: await sourceOf(kong, served) };
    entry.finish(classify(facts, entry.config), facts.proxyLatencyMs, facts.requestLatencyMs);
  }
}
