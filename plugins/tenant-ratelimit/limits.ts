/**
 * A tenant's effective limits: its plan's (or the default limits), with its own overrides
 * on top. Bursts default to one minute's worth.
 */
import type { TenantLimits } from './tenant-limits';
import type { TenantContext } from '../../lib/tenant/context';
import type { LimitsConfig, LimitsOverride, TenantRatelimitConfig } from './config';

function own<T>(map: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

export function resolveLimits(config: TenantRatelimitConfig, ctx: TenantContext): TenantLimits {
  const plan: LimitsConfig = own(config.plans, ctx.plan) ?? config.default_limits;
  const o: LimitsOverride | undefined = own(config.tenants, ctx.tenantId);
  const rpm = o?.requests_per_minute ?? plan.requests_per_minute;
  const tpm = o?.tokens_per_minute ?? plan.tokens_per_minute;
  return Object.freeze({
    requestsPerMinute: rpm,
    requestBurst: o?.request_burst ?? plan.request_burst ?? rpm,
    tokensPerMinute: tpm,
    tokenBurst: o?.token_burst ?? plan.token_burst ?? tpm,
    maxConcurrent: o?.max_concurrent ?? plan.max_concurrent,
  });
}

/** Short names of the limits, used in headers, error codes and metric labels. */
export const POLICY_NAMES = { requests: 'rpm', tokens: 'tpm', concurrency: 'concurrency' } as const;
