/**
 * A request's service class: urgent (the default) or flex (non-urgent work on idle capacity).
 */
import type { KongPdk } from '../../lib/pdk/kong';
import type { ServiceClass } from '../../lib/redis/fair-queue';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import { unsupportedServiceTier } from './refusals';
import type { TenantRatelimitConfig } from './config';

/** `service_tier` values forwarded upstream; anything else is refused before it gets there. */
const SERVICE_TIERS = new Set(['auto', 'default', 'flex']);

/**
 * The body's `service_tier` (`tier`: lib/tokens/estimate.ts `serviceTierOf`, read once with the
 * shared estimate) or the configured header, for
 * tenants whose plan may mark flex work. Nothing a client sends promotes a request: an
 * unknown tier is refused, other header values ignored. The header is read only when it can
 * matter (one PDK call when the scope does not hold the headers already).
 */
export async function serviceClassOf(
  kong: KongPdk,
  request: RequestScope,
  flex: TenantRatelimitConfig['flex'],
  ctx: TenantContext,
  tier: string | null,
): Promise<ServiceClass> {
  if (tier !== null && !SERVICE_TIERS.has(tier)) throw unsupportedServiceTier(tier);
  if (!flex.enabled) return 'urgent';
  if (flex.allowed_plans !== null && !flex.allowed_plans.includes(ctx.plan)) return 'urgent';
  if (tier === 'flex') return 'flex';
  if (flex.header === null) return 'urgent';
  const v = await request.header(kong, flex.header);
  return typeof v === 'string' && v.trim().toLowerCase() === flex.header_value.toLowerCase()
    ? 'flex'
    : 'urgent';
}
