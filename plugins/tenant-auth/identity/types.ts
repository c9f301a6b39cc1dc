import type { IdentitySource } from '../../../lib/tenant/context';

/**
 * What a verified credential says. `tenantId` is still a raw string here: it is validated
 * (parseTenantId) in exactly one place, when the TenantContext is built.
 */
export interface VerifiedIdentity {
  readonly source: IdentitySource;
  readonly tenantId: string;
  readonly plan: string | null;
  readonly subject: string;
}
