/**
 * The typed view of tenant-ratelimit's validated config: what readConfig returns for
 * schema.ts's fields, defaults applied (unset nullable fields are null), and the cross-field
 * rules Kong's schema cannot state, checked once when an instance starts (ready.ts); their
 * messages name the field and the bad value.
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

/** Cross-field rules, with the field and the bad value in the message. */
export function checkConfig(c: TenantRatelimitConfig): void {
  const check = (l: LimitsConfig | LimitsOverride, where: string) => {
    if (l.request_burst !== null && (l.requests_per_minute ?? 1) === 0) {
      throw new Error(`${where}.request_burst is set but requests_per_minute is 0 (limit off)`);
    }
    if (l.token_burst !== null && (l.tokens_per_minute ?? 1) === 0) {
      throw new Error(`${where}.token_burst is set but tokens_per_minute is 0 (limit off)`);
    }
  };
  check(c.default_limits, 'default_limits');
  for (const [name, l] of Object.entries(c.plans)) check(l, `plans.${name}`);
  for (const [name, l] of Object.entries(c.tenants)) check(l, `tenants.${name}`);
  const q = c.queue;
  if (q.token_burst !== null && q.tokens_per_minute === 0) {
    throw new Error('queue.token_burst is set but queue.tokens_per_minute is 0');
  }
  if (q.local_max_concurrent !== null && q.max_concurrent === 0) {
    throw new Error('queue.local_max_concurrent is set but queue.max_concurrent is 0');
  }
  const f = c.flex;
  if (f.enabled && f.max_wait_ms < q.max_wait_ms) {
    throw new Error(
      `flex.max_wait_ms (${f.max_wait_ms}) is shorter than queue.max_wait_ms (${q.max_wait_ms}): flex work waits longer, not less`,
    );
  }
  if (q.max_wait_ms > 0 && q.poll_interval_ms > q.max_wait_ms) {
    throw new Error(
      `queue.poll_interval_ms (${q.poll_interval_ms}) is longer than queue.max_wait_ms (${q.max_wait_ms})`,
    );
  }
}
