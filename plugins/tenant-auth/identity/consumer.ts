/**
 * Identity from a Kong consumer that an earlier, higher-priority Kong auth plugin
 * (key-auth 1250, jwt 1450, ...) authenticated. The consumer is read with
 * `kong.client.get_consumer()`, i.e. `ngx.ctx.authenticated_consumer`, which only an auth
 * plugin can set: never from a header (`X-Consumer-*` headers can be sent by a client when
 * no auth plugin runs on the route).
 */
import { GatewayError } from '../../../lib/http/errors';
import type { KongConsumer } from '../../../lib/pdk/kong';
import type { TenantAuthConfig } from '../config';
import type { VerifiedIdentity } from './types';

/**
 * `anonymous`: the request carries `X-Anonymous-Consumer: true`. Kong's auth plugins set it
 * when they fell back to their `anonymous` consumer and clear it when a credential
 * authenticated (kong/plugins/key-auth/handler.lua set_consumer), so after them it is
 * authoritative: an anonymous consumer is nobody's tenant.
 */
export function identityFromConsumer(
  consumer: KongConsumer | null | undefined,
  cfg: TenantAuthConfig['consumer'],
  anonymous = false,
): VerifiedIdentity | null {
  if (!consumer || typeof consumer.id !== 'string' || anonymous) return null;
  const raw = consumer[cfg.tenant_id_field];
  if (typeof raw !== 'string' || raw.length === 0) {
    throw new GatewayError({
      status: 403,
      type: 'permission_error',
      code: 'consumer_not_a_tenant',
      message: `the authenticated consumer has no ${cfg.tenant_id_field}, so it is not mapped to a tenant`,
    });
  }
  return {
    source: 'consumer',
    tenantId: raw,
    plan: planFromTags(consumer.tags, cfg.plan_tag_prefix),
    subject: consumer.id,
  };
}

/** The plan named by the first tag with the prefix, e.g. `plan:pro` -> `pro`. */
export function planFromTags(
  tags: readonly string[] | null | undefined,
  prefix: string,
): string | null {
  for (const tag of tags ?? []) {
    if (typeof tag === 'string' && tag.startsWith(prefix) && tag.length > prefix.length) {
      return tag.slice(prefix.length);
    }
  }
  return null;
}
