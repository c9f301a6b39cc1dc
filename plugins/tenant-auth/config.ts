/**
 * The typed view of tenant-auth's validated config: what readConfig returns for schema.ts's
 * fields, defaults applied (unset nullable fields are null). The cross-field rules Kong's
 * schema cannot state are `checkConfig` (ready.ts), run once when an instance starts.
 */
import type { GuardConfig } from './guard';
import type { StoreMode } from './provider-state';
import type { UpstreamAuthConfig } from './upstream-auth';

export type IdentitySourceName = 'consumer' | 'jwt';
export type ModelPolicyMode = 'rewrite' | 'reject';
export type JwtAlgorithm = 'HS256' | 'RS256' | 'ES256';

export interface PlanConfig {
  tools_allowed: string[];
  preferred_model: string | null;
  fallback_model: string | null;
  persona: string | null;
  weight: number;
  models: string[];
  model_aliases: Record<string, string>;
  model_policy: ModelPolicyMode | null;
  embedding_model: string | null;
  /** Optional in the type only: the schema's default fills it (older configs in tests omit it). */
  capture?: boolean;
  /** Replaces the top-level `api_surface` for this plan; null keeps it. */
  api_surface?: string[] | null;
  /** The plan's content guard (plugins/tenant-auth/guard.ts); null: none. */
  guard?: GuardConfig | null;
  /** Replaces the top-level `store`; null keeps it. */
  store?: StoreMode | null;
}

export interface TenantOverride {
  tools_allowed: string[] | null;
  preferred_model: string | null;
  fallback_model: string | null;
  persona: string | null;
  knowledge_namespace: string | null;
  weight: number | null;
  models: string[] | null;
  model_aliases: Record<string, string> | null;
  model_policy: ModelPolicyMode | null;
  embedding_model: string | null;
  capture?: boolean | null;
  api_surface?: string[] | null;
  /** Applies with the plan's guard, never instead of it. */
  guard?: GuardConfig | null;
  store?: StoreMode | null;
}

export interface TenantAuthConfig {
  identity_sources: IdentitySourceName[];
  consumer: { tenant_id_field: 'custom_id' | 'username'; plan_tag_prefix: string };
  jwt: {
    header_name: string;
    algorithms: JwtAlgorithm[];
    hs256_secrets: string[];
    public_keys: string[];
    jwks_file: string | null;
    issuer: string | null;
    audience: string | null;
    clock_skew_seconds: number;
    max_lifetime_seconds: number | null;
    tenant_claim: string;
    plan_claim: string;
  };
  default_plan: string | null;
  plans: Record<string, PlanConfig>;
  tenants: Record<string, TenantOverride>;
  tool_policy: 'strip' | 'reject';
  model_policy: ModelPolicyMode;
  model_aliases: Record<string, string>;
  models_endpoint: boolean;
  persona_mode: 'prepend' | 'replace';
  strip_headers: string[];
  upstream_auth: UpstreamAuthConfig;
  api_surface: string[];
  /** Optional in the type only: the schema's default fills it. */
  store?: StoreMode;
  api_base_path: string;
  max_body_bytes: number;
  validate_json_body: boolean;
  require_body_methods: string[];
  metrics_port: number;
  metrics_host: string;
  metrics_max_tenants: number;
}
