/**
 * What a finished request says about its upstream, from the facts the `log` phase has: who
 * answered (`kong.response.get_source()`), the statuses and the latencies, as Kong's serializer
 * computes them (read by lib/pluginserver/log-facts.ts: saved by kong.yml's pre-function log
 * snippet, else from `kong.log.serialize()`).
 *
 * Kong 3.9.3 (kong/pdk/response.lua get_source, kong/init.lua Kong.handle_error):
 * - `service`: the upstream answered; its status is the verdict;
 * - `error`: Kong's error handler answered — after proxying, nginx's 502 (connection refused
 *   or reset) or 504 (timeout) on the upstream; before proxying, a Kong error (no verdict);
 * - `exit`: a plugin answered with kong.response.exit (a refusal): no verdict on the upstream.
 */
import type { Verdict } from './breakers';
import type { BreakerConfig } from './schema';

export type OutcomeKind =
  | 'success'
  | 'upstream_5xx'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_slow'
  | 'upstream_429'
  | 'refused_by_plugin'
  | 'kong_error'
  | 'lost';

export interface LogFacts {
  source: string;
  /** The client-facing status (serializer `response.status`). */
  status: number;
  /** The serializer's `upstream_status` ("" when no upstream was tried; "502, 200" after retries). */
  upstreamStatus: string;
  /** The serializer's `latencies.proxy`: time to the upstream's response headers, -1 if none. */
  proxyLatencyMs: number;
  /** The serializer's `latencies.request`: the whole request as the client saw it, -1 if none. */
  requestLatencyMs: number;
}

/** The last status nginx recorded for the upstream, or null when none was tried. */
export function lastUpstreamStatus(raw: string): number | null {
  const parts = raw
    .split(/[,:]/)
    .map((s) => Number.parseInt(s.trim(), 10))
    .filter((n) => Number.isInteger(n) && n > 0);
  return parts.length ? (parts[parts.length - 1] ?? null) : null;
}

export function classify(f: LogFacts, config: BreakerConfig): OutcomeKind {
  if (f.source === 'exit') return 'refused_by_plugin';
  const upstream = lastUpstreamStatus(f.upstreamStatus);
  if (f.source === 'error') {
    // Kong's error handler after a proxy attempt: the upstream could not be used.
    if (upstream !== null || f.status === 502 || f.status === 504) {
      return (upstream ?? f.status) === 504 ? 'upstream_timeout' : 'upstream_unreachable';
    }
    return 'kong_error';
  }
  const status = upstream ?? f.status;
  if (status === 429) return 'upstream_429';
  if (status >= 500) return 'upstream_5xx';
  if (config.slow_call_ms > 0 && f.proxyLatencyMs > config.slow_call_ms) return 'upstream_slow';
  return 'success';
}

/** What the breaker records for an outcome. */
export function verdictOf(kind: OutcomeKind, config: BreakerConfig): Verdict {
  switch (kind) {
    case 'success':
      return { kind: 'success' };
    case 'upstream_429':
      return config.count_429_as_failure
        ? { kind: 'failure', reason: kind }
        : { kind: 'none', reason: kind };
    case 'upstream_5xx':
    case 'upstream_unreachable':
    case 'upstream_timeout':
    case 'upstream_slow':
      return { kind: 'failure', reason: kind };
    default:
      return { kind: 'none', reason: kind };
  }
}
