/** circuit-breaker's refusals (its misconfigured 500 is the plugin kit's) and the response headers it sets. */
import { GatewayError } from '../../lib/http/errors';

/** Response header naming the fallback upstream a request was sent to. */
export const FALLBACK_HEADER = 'X-Circuit-Breaker-Fallback';
export const FALLBACK_MODEL_HEADER = 'X-Circuit-Breaker-Fallback-Model';
export const STATE_HEADER = 'X-Circuit-Breaker-State';

export const NO_SERVICE = new GatewayError({
  status: 503,
  type: 'service_unavailable',
  code: 'no_upstream',
  message: 'no upstream is configured for this request',
});

/** Seconds for Retry-After: at least 1, so clients never spin. */
function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

export function shortCircuit(state: 'open' | 'half_open', retryAfterMs: number): GatewayError {
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

/** The tenant's bulkhead is full, or its queue wait ran out. */
export function bulkheadFull(
  reason: 'full' | 'queue_timeout',
  retryAfterSeconds: number,
): GatewayError {
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: 'tenant_bulkhead_full',
    message:
      reason === 'full'
        ? 'too many of your requests are in flight to the upstream; retry shortly'
        : 'your requests waited too long for an upstream slot; retry shortly',
    retryAfterSeconds,
  });
}

/** A body over the route's limit, read to write the fallback's model into it. */
export function bodyTooLarge(max: number): GatewayError {
  return new GatewayError({
    status: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
    message: `request bodies over ${max} bytes are not accepted on this route`,
  });
}
