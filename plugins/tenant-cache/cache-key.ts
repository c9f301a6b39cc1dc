/**
 * The cache key: what makes two requests "the same request" for the cache.
 *
 * The Redis key is `<ns>:{t:<tenant>}:cache:e:<digest>`, where the digest is an HMAC under the
 * tenant's own naming key (crypto.ts) over, length-prefixed so no field can bleed into the
 * next:
 *   the key-format version, the tenant id, the plan, the persona and the tool grants in
 *   force, the knowledge namespace, the model tier and the model tenant-auth decided will
 *   serve the request (so an answer written under one tier's rewrite is never found under
 *   another tier, even for the same tenant), the route and its service, the method, the path with its
 *   query, and the canonical request body (canonical.ts).
 * The generations (the tenant's knowledge generation, bumped by retrieval-injector when its
 * corpus changes, and the cache generation, replaced by a purge) are read in the same Redis
 * round trip as the entry and must equal the ones the entry was written under (entry.ts): an
 * entry written under any other generation is never served.
 *
 * `cacheKeyFor` takes a TenantContext: there is no way to name an entry without one.
 */
import { createHmac } from 'node:crypto';
import type { Keyspace, RedisKey } from '../../lib/redis/keys';
import type { TenantContext } from '../../lib/tenant/context';
import { field, type CacheKeyring } from './crypto';

/** Bump when anything below changes meaning: every old entry is then unreachable. */
export const KEY_FORMAT_VERSION = 'tc2';

export interface RequestIdentity {
  readonly method: string;
  readonly pathWithQuery: string;
  readonly routeId: string;
  readonly serviceId: string;
  /** canonical.ts `canonicalRequest(...).canonical` */
  readonly canonicalBody: string;
}

export interface CacheKey {
  readonly digest: string;
  readonly redisKey: RedisKey;
}

/**
 * A digest of the tenant's (the exact key, the semantic scope): hex HMAC-SHA256 under the
 * tenant's naming key over, each framed by `field`: the format version, the tenant and what it
 * is granted (plan, persona, tools, knowledge namespace), `policy` (what else of the tenant's
 * policy the digest holds), the route, its service, the method, the path with its query, then
 * `rest` (the body, or what stands for it).
 */
export function tenantDigest(
  ctx: TenantContext,
  keyring: CacheKeyring,
  version: string,
  policy: readonly string[],
  req: Omit<RequestIdentity, 'canonicalBody'>,
  rest: readonly string[],
): string {
  const h = createHmac('sha256', keyring.forTenant(ctx).nameKey);
  const fields = [
    version,
    ctx.tenantId,
    ctx.plan,
    ctx.policy.persona ?? '\u0000none',
    JSON.stringify([...ctx.policy.toolsAllowed].sort()),
    ctx.policy.knowledgeNamespace,
    ...policy,
    req.routeId,
    req.serviceId,
    req.method.toUpperCase(),
    req.pathWithQuery,
    ...rest,
  ];
  for (const value of fields) field(h, value);
  return h.digest('hex');
}

/** The tenant's digest of a request, the name of its entry. */
export function cacheDigest(
  ctx: TenantContext,
  keyring: CacheKeyring,
  req: RequestIdentity,
): string {
  const models = [JSON.stringify(ctx.policy.models), ctx.model?.served ?? '\u0000none'];
  return tenantDigest(ctx, keyring, KEY_FORMAT_VERSION, models, req, [req.canonicalBody]);
}

/** The entry's Redis key for this tenant and request. */
export function cacheKeyFor(
  ctx: TenantContext,
  keyring: CacheKeyring,
  keyspace: Keyspace,
  req: RequestIdentity,
): CacheKey {
  const digest = cacheDigest(ctx, keyring, req);
  return { digest, redisKey: keyspace.cacheEntry(ctx.tenantId, digest) };
}
