/**
 * The typed view of tenant-ratelimit's validated config: what readConfig returns for
 * schema.ts's fields, defaults applied (unset nullable fields are null), and the cross-field
 * rules Kong's schema cannot state, checked once when an instance starts (ready.ts); their
 * messages name the field and the bad value.
 */
import type { ConfigOf } from '../../lib/schema/derive';
import type { Schema } from './schema';

/** The config readConfig returns, read off the schema (lib/schema/derive.ts): they cannot drift. */
export type TenantRatelimitConfig = ConfigOf<typeof Schema>;
/** A plan's limits (every field set). */
export type LimitsConfig = TenantRatelimitConfig['default_limits'];
/** A tenant's override: a null field inherits the plan's. */
export type LimitsOverride = TenantRatelimitConfig['tenants'][string];
export type RedisErrorPolicy = TenantRatelimitConfig['on_redis_unavailable'];

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
