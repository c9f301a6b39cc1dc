/**
 * Every refusal tenant-ratelimit answers, as OpenAI-style errors (the 500 of an unusable
 * config is the plugin kit's, lib/plugin/define.ts): the 503 of an unreachable Redis (on_redis_unavailable `refuse`), the 429 of a tenant's own
 * limits, the 503 of an upstream with no seat in time, and the 400 of an unknown service tier.
 */
import { GatewayError } from '../../lib/http/errors';
import type { ServiceClass } from '../../lib/redis/fair-queue';
import type { AdmitDecision, TenantLimits } from './tenant-limits';
import { LOCAL_SCOPE, SCOPE_HEADER, SERVICE_CLASS_HEADER, rateLimitHeaders } from './headers';
import type { Scope } from './state';

export const UNAVAILABLE = new GatewayError({
  status: 503,
  type: 'service_unavailable',
  code: 'ratelimit_unavailable',
  message: 'rate limiting is temporarily unavailable; the request was not forwarded',
  retryAfterSeconds: 1,
});

const REFUSAL_CODES = {
  requests: 'tenant_requests_per_minute_exceeded',
  tokens: 'tenant_tokens_per_minute_exceeded',
  concurrency: 'tenant_concurrency_exceeded',
} as const;

const REFUSAL_TEXT = {
  requests: 'your requests per minute',
  tokens: 'your LLM tokens per minute',
  concurrency: 'your concurrent requests',
} as const;

/** The 429 of a tenant's own limits; `scope` is where the decision was taken. */
export function tooMany(
  d: AdmitDecision,
  limits: TenantLimits,
  scope: Scope,
  extra: Record<string, string>,
): GatewayError {
  const by = d.refusedBy ?? 'requests';
  const headers: Record<string, string> = { ...rateLimitHeaders(limits, d), ...extra };
  if (scope === 'local') headers[SCOPE_HEADER] = LOCAL_SCOPE;
  return new GatewayError({
    status: 429,
    type: 'rate_limit_error',
    code: REFUSAL_CODES[by],
    message: `you have exceeded ${REFUSAL_TEXT[by]} limit; retry after the time in Retry-After`,
    retryAfterSeconds: Math.max(1, Math.ceil(d.retryAfterMs / 1000)),
    headers,
  });
}

/** The 503 of an upstream that freed no seat in time; `scope` is where the seat was sought. */
export function saturated(
  retryAfterSeconds: number,
  scope: Scope,
  serviceClass: ServiceClass,
): GatewayError {
  const headers: Record<string, string> = { [SERVICE_CLASS_HEADER]: serviceClass };
  if (scope === 'local') headers[SCOPE_HEADER] = LOCAL_SCOPE;
  return new GatewayError({
    status: 503,
    type: 'service_unavailable',
    code: 'upstream_saturated',
    message:
      'the upstream is at capacity for all tenants and no seat freed up in time; try again later',
    retryAfterSeconds,
    headers,
  });
}

export function unsupportedServiceTier(value: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'unsupported_service_tier',
    param: 'service_tier',
    message: `service_tier ${JSON.stringify(value)} is not available through this gateway; use "auto", "default" or "flex" (non-urgent work)`,
  });
}
