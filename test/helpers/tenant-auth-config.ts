import type { TenantAuthConfig } from '../../plugins/tenant-auth/schema';

/** A complete tenant-auth config with the schema's defaults, for unit tests. */
export function tenantAuthConfig(overrides: Partial<TenantAuthConfig> = {}): TenantAuthConfig {
  return {
    identity_sources: ['consumer'],
    consumer: { tenant_id_field: 'custom_id', plan_tag_prefix: 'plan:' },
    jwt: {
      header_name: 'authorization',
      algorithms: ['RS256', 'ES256'],
      hs256_secrets: [],
      public_keys: [],
      jwks_file: null,
      issuer: null,
      audience: null,
      clock_skew_seconds: 60,
      tenant_claim: 'tenant_id',
      plan_claim: 'plan',
    },
    default_plan: null,
    plans: {},
    tenants: {},
    tool_policy: 'strip',
    persona_mode: 'prepend',
    strip_headers: [],
    max_body_bytes: 1048576,
    validate_json_body: true,
    metrics_port: 0,
    metrics_max_tenants: 1000,
    ...overrides,
  };
}
