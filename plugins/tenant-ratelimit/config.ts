/**
 * The typed view of tenant-ratelimit's validated config: what readConfig returns for
 * schema.ts's fields, defaults applied (unset nullable fields are null).
 */
import type { RedisConfig } from '../../lib/schema/typedefs';

export interface LimitsConfig {
  requests_per_minute: number;
  request_burst: number | null;
  tokens_per_minute: number;
  token_burst: number | null;
  max_concurrent: number;
}

export interface LimitsOverride {
  requests_per_minute: number | null;
  request_burst: number | null;
  tokens_per_minute: number | null;
  token_burst: number | null;
  max_concurrent: number | null;
}

export type RedisErrorPolicy = 'refuse' | 'local';

export interface TenantRatelimitConfig {
  redis: RedisConfig;
  on_redis_unavailable: RedisErrorPolicy;
  default_limits: LimitsConfig;
  plans: Record<string, LimitsConfig>;
  tenants: Record<string, LimitsOverride>;
  queue: {
    upstream: string;
    max_concurrent: number;
    tokens_per_minute: number;
    token_burst: number | null;
    max_wait_ms: number;
    poll_interval_ms: number;
    seat_ttl_seconds: number;
    local_max_concurrent: number | null;
  };
  flex: {
    enabled: boolean;
    header: string | null;
    header_value: string;
    allowed_plans: string[] | null;
    max_wait_ms: number;
    reserved_seats: number;
    wait_for_tenant_limits: boolean;
  };
  estimate: { default_max_tokens: number; max_tokens_cap: number; unknown_prompt_tokens: number };
  ratelimit_headers: boolean;
  metrics_port: number;
  metrics_host: string;
  metrics_max_tenants: number;
}
