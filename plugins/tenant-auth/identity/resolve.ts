/**
 * Who is asking: every configured identity source that presents a credential (a Kong consumer
 * authenticated by an earlier plugin, a JWT verified here) must name the same tenant; the
 * tenant id is validated once, here, and the plan, policy and model tier resolved from config.
 */
import { GatewayError } from '../../../lib/http/errors';
import { firstHeader, type HeaderMap, type KongPdk } from '../../../lib/pdk/kong';
import { createTenantContext, type TenantContext } from '../../../lib/tenant/context';
import {
  isInvalidTenantIdError,
  parseTenantId,
  type TenantId,
} from '../../../lib/tenant/tenant-id';
import type { ModelTier } from '../models';
import { resolvePlanName, resolvePolicy } from '../policy';
import type { Ready } from '../ready';
import { identityFromConsumer } from './consumer';
import type { VerifiedIdentity } from './types';

const NO_CREDENTIAL = new GatewayError({
  status: 401,
  type: 'authentication_error',
  code: 'missing_credential',
  message: 'no credential: authenticate with your API key or a bearer token',
  headers: { 'WWW-Authenticate': 'Bearer' },
});

/** Every configured source that presents a credential must agree on the tenant. */
export async function identify(
  kong: KongPdk,
  headers: HeaderMap,
  ready: Ready,
): Promise<VerifiedIdentity> {
  const found: VerifiedIdentity[] = [];
  for (const source of ready.config.identity_sources) {
    if (source === 'consumer') {
      const anonymous = firstHeader(headers, 'x-anonymous-consumer') === 'true';
      const consumer = await kong.client.getConsumer();
      const id = identityFromConsumer(consumer, ready.config.consumer, anonymous);
      if (id) found.push(id);
    } else if (ready.jwt) {
      // Another scheme in the header is fine when a consumer may stand in (basic-auth, …).
      const otherSchemes = ready.config.identity_sources.includes('consumer');
      const token = ready.jwt.tokenFromHeaders(headers, otherSchemes);
      if (token !== null) found.push(await ready.jwt.verify(token));
    }
  }
  const first = found[0];
  if (!first) throw NO_CREDENTIAL;
  if (found.some((f) => f.tenantId !== first.tenantId)) {
    throw new GatewayError({
      status: 403,
      type: 'permission_error',
      code: 'conflicting_credentials',
      message: 'the credentials presented name different tenants',
    });
  }
  return first;
}

export function buildContext(
  identity: VerifiedIdentity,
  ready: Ready,
): { ctx: TenantContext; tier: ModelTier | null } {
  let tenantId: TenantId;
  try {
    // The one place a tenant id is validated; every later use relies on the brand.
    tenantId = parseTenantId(identity.tenantId);
  } catch (e) {
    if (!isInvalidTenantIdError(e)) throw e;
    throw new GatewayError({
      status: 403,
      type: 'permission_error',
      code: 'invalid_tenant_id',
      message: `the credential's tenant id is not valid (${e.reason})`,
    });
  }
  const plan = resolvePlanName(ready.config, identity.plan);
  const tier = ready.tiers.tierFor(plan, tenantId);
  const policy = resolvePolicy(ready.config, tenantId, plan);
  const ctx = createTenantContext({
    tenantId,
    plan,
    source: identity.source,
    subject: identity.subject,
    // On a tiered plan, later plugins see the tier's models in the spelling sent upstream.
    policy:
      tier === null
        ? policy
        : {
            ...policy,
            preferredModel: tier.preferred,
            fallbackModel: tier.fallback,
            models: tier.models,
          },
    model: null,
  });
  return { ctx, tier };
}
