/**
 * What circuit-breaker keeps per process (one per gateway node): the breakers, the tenants'
 * bulkheads and the admitted calls until their log event. Instances are recreated after 60 s
 * idle and per config entry; this state outlives them. Also here: the choice of upstream by
 * its breaker, and the outcome of an admitted call, recorded once, by its log event or a TTL.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import { readServedFacts, sourceOf } from '../../lib/pluginserver/log-facts';
import type { TenantContext } from '../../lib/tenant/context';
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
import { shortCircuit } from './refusals';
import { breakerKey, type Target } from './routing';
import type { BreakerConfig, CircuitBreakerConfig } from './schema';

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
export const bulkheads = new Bulkheads();
metrics.observeBulkheads(() => bulkheads.all());

export interface InFlight {
  finish(kind: OutcomeKind, proxyLatencyMs: number, requestLatencyMs?: number): void;
  config: BreakerConfig;
}
/** Admitted requests by Kong request id, until their log event (or a TTL) ends them. */
const inFlight = new Map<string, InFlight>();

export interface Chosen {
  target: Target;
  breaker: UpstreamBreaker;
  fallbackFrom: Target | null;
}

/** The primary if its breaker lets requests through, else the fallback, else a 503. */
export function choose(
  at: { config: CircuitBreakerConfig; fingerprint: string },
  ctx: TenantContext,
  tenantLabel: string,
  primary: Target,
  fallback: Target | null,
): Chosen {
  const breaker = breakerFor(at, ctx, tenantLabel, primary);
  if (breaker.wouldAdmit()) return { target: primary, breaker, fallbackFrom: null };
  if (fallback !== null) {
    const fb = breakerFor(at, ctx, tenantLabel, fallback);
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

function breakerFor(
  at: { config: CircuitBreakerConfig; fingerprint: string },
  ctx: TenantContext,
  tenantLabel: string,
  target: Target,
): UpstreamBreaker {
  return breakers.get(
    breakerKey(at.fingerprint, target, ctx),
    target.label,
    target.scope === 'tenant' ? tenantLabel : '*',
    at.config.breaker,
  );
}

/** Remembers the admitted call until its log event, with timers for a lost one. */
export function track(
  config: CircuitBreakerConfig,
  requestId: string,
  chosen: Chosen,
  tenantLabel: string,
  admission: Admission & { admitted: true },
  slot: Slot,
): InFlight['finish'] {
  const breakerConfig = config.breaker;
  const upstream = chosen.target.label;
  let probeTimer: NodeJS.Timeout | undefined;
  const settle = (v: Verdict) => admission.settle(v);
  const finish = (kind: OutcomeKind, proxyLatencyMs: number, requestLatencyMs = -1) => {
    if (!inFlight.delete(requestId)) return;
    clearTimeout(ttlTimer);
    if (probeTimer) clearTimeout(probeTimer);
    settle(verdictOf(kind, breakerConfig));
    slot.release();
    metrics.outcomes.inc({ upstream, tenant: tenantLabel, outcome: kind });
    if (proxyLatencyMs >= 0) metrics.upstreamLatency.observe({ upstream }, proxyLatencyMs / 1000);
    if (requestLatencyMs >= 0) {
      metrics.requestDuration.observe({ tenant: tenantLabel }, requestLatencyMs / 1000);
    }
  };
  // A lost log event (Kong drops them when its timers saturate) must not hold the slot, nor
  // keep the breaker half-open: the probe gets its own, shorter deadline.
  const ttlTimer = setTimeout(() => finish('lost', -1), config.bulkhead.slot_ttl_ms);
  ttlTimer.unref();
  if (admission.probe) {
    probeTimer = setTimeout(
      () => settle({ kind: 'failure', reason: 'probe_timeout' }),
      breakerConfig.probe_timeout_ms,
    );
    probeTimer.unref();
  }
  inFlight.set(requestId, { finish, config: breakerConfig });
  return finish;
}

/** The outcome of a request this process admitted, from what Kong says in its log phase. */
export async function record(kong: KongPdk): Promise<void> {
  // The saved facts where kong.yml's log snippet is on the route (no serializer), else the
  // serializer's; who answered is asked only for a request this plugin admitted.
  const served = await readServedFacts(kong);
  if (served.requestId === null) return;
  const entry = inFlight.get(served.requestId);
  if (!entry) return; // not admitted by this plugin (refused earlier, or another node)
  const facts = { ...served, source: await sourceOf(kong, served) };
  entry.finish(classify(facts, entry.config), facts.proxyLatencyMs, facts.requestLatencyMs);
}
