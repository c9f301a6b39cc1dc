import { readConfig } from '../../lib/schema/config';
import type { TenantAuthConfig } from '../../plugins/tenant-auth/config';
import { Schema } from '../../plugins/tenant-auth/schema';

/** A complete tenant-auth config: the schema's defaults, then the overrides. */
export function tenantAuthConfig(overrides: Partial<TenantAuthConfig> = {}): TenantAuthConfig {
  return { ...readConfig(Schema, {}), ...overrides };
}
