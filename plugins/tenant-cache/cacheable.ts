/**
 * Whether this request may be answered from the cache, and what names it if so: the PDK reads
 * in order, stopping at the first that decides (so a bypass costs only the reads it needed),
 * each rule in policy.ts. A request that passes is a POST to a cached endpoint, with no
 * `no-store` from the client, a body within `max_body_bytes` that is a canonicalisable JSON
 * object the plan caches, on a route Kong names.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import type { RequestIdentity } from './cache-key';
import { NotCanonicalisable, canonicalRequest } from './canonical';
import {
  bodyVerdict,
  clientCacheControl,
  endpointOf,
  type BypassReason,
  type Endpoint,
} from './policy';
import { planPolicy, type PlanPolicy, type TenantCacheConfig } from './schema';

export interface Bypass {
  readonly status: 'bypass';
  readonly reason: BypassReason;
}

export interface Cacheable {
  readonly status: 'cacheable';
  readonly policy: PlanPolicy;
  readonly endpoint: Endpoint;
  /** `no_cache`: not answered from the cache, but the fresh answer refreshes it. */
  readonly wish: 'no_cache' | null;
  /** The request as the exact key names it (cache-key.ts). */
  readonly identity: RequestIdentity;
  /** The parsed body (the semantic cache's question comes from it). */
  readonly body: Record<string, unknown>;
}

export async function readCacheable(
  config: TenantCacheConfig,
  k: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
): Promise<Cacheable | Bypass> {
  const bypass = (reason: BypassReason): Bypass => ({ status: 'bypass', reason });
  const policy = planPolicy(config, ctx.plan);
  if (!policy.enabled) return bypass('plan_disabled');
  if ((await scope.method(k)) !== 'POST') return bypass('method');
  const pathWithQuery = await scope.pathWithQuery(k);
  const endpoint = endpointOf(pathWithQuery, config.cache_embeddings);
  if (!endpoint) return bypass('endpoint');
  const headers = await scope.headers(k);
  const wish = clientCacheControl(headers);
  if (wish === 'no_store') return bypass('no_store');

  const max = config.max_body_bytes;
  const bytes = await scope.rawBody(k, max);
  if (bytes === null) return bypass('too_large');
  if (bytes.length > max) return bypass('too_large');
  let parsed;
  try {
    parsed = canonicalRequest(bytes.toString('utf8'));
  } catch (e) {
    if (e instanceof NotCanonicalisable) return bypass(e.reason);
    if (e instanceof RangeError) return bypass('too_deep');
    throw e;
  }
  const verdict = bodyVerdict(endpoint, parsed.body, policy);
  if (verdict) return bypass(verdict);

  const route = await k.router.getRoute();
  if (!route?.id) return bypass('no_route');
  return {
    status: 'cacheable',
    policy,
    endpoint,
    wish,
    identity: {
      method: 'POST',
      pathWithQuery,
      routeId: route.id,
      serviceId: route.service?.id ?? '',
      canonicalBody: parsed.canonical,
    },
    body: parsed.body,
  };
}
