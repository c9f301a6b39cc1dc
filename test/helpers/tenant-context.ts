/** A TenantContext for tests of code after tenant-auth: any tool, no persona, its own namespace. */
import { createTenantContext, type TenantContext } from '../../lib/tenant/context';

export function tenantContextOf(tenantId: string, plan = 'free', weight = 1): TenantContext {
  return createTenantContext({
    tenantId,
    plan,
    source: 'consumer',
    subject: 'x',
    policy: {
      toolsAllowed: ['*'],
      preferredModel: null,
      fallbackModel: null,
      persona: null,
      knowledgeNamespace: tenantId,
      weight,
    },
  });
}
