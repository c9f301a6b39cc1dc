/**
 * Backpressure headers: the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-08:
 * `RateLimit-Policy: "rpm";q=600;w=60` and `RateLimit: "rpm";r=12;t=3`, Structured Field
 * lists, one item per policy) and the queue wait of an admitted request.
 */
import type { AdmitDecision, TenantLimits } from './tenant-limits';

export const QUEUE_WAIT_HEADER = 'X-Queue-Wait-Ms';
/** The class that served (or refused) the request: `urgent` or `flex`. */
export const SERVICE_CLASS_HEADER = 'X-Service-Class';
/** Present only when the limits were applied per gateway node (Redis unavailable). */
export const SCOPE_HEADER = 'X-RateLimit-Scope';
export const LOCAL_SCOPE = 'local-node';

/** `RateLimit-Policy` and `RateLimit` for the tenant's enabled per-minute limits. */
export function rateLimitHeaders(
  limits: TenantLimits,
  d: Pick<AdmitDecision, 'requestsLeft' | 'tokensLeft' | 'requestsResetMs' | 'tokensResetMs'>,
): Record<string, string> {
  const policies: string[] = [];
  const states: string[] = [];
  const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));
  if (limits.requestsPerMinute > 0 && d.requestsLeft !== null) {
    policies.push(`"rpm";q=${limits.requestsPerMinute};w=60`);
    states.push(`"rpm";r=${Math.max(0, d.requestsLeft)};t=${seconds(d.requestsResetMs)}`);
  }
  if (limits.tokensPerMinute > 0 && d.tokensLeft !== null) {
    policies.push(`"tpm";q=${limits.tokensPerMinute};w=60`);
    states.push(`"tpm";r=${Math.max(0, d.tokensLeft)};t=${seconds(d.tokensResetMs)}`);
  }
  if (policies.length === 0) return {};
  return { 'RateLimit-Policy': policies.join(', '), RateLimit: states.join(', ') };
}
