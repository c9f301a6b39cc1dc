/**
 * tenant-ratelimit configuration: the Kong schema (pure data: descriptions, defaults,
 * constraints). Its typed view, and the cross-field rules Kong's schema cannot state
 * (`checkConfig`, run when an instance starts), are config.ts.
 */
import {
  METRICS_FIELDS,
  field,
  type KongField,
  type KongSchemaFields,
} from '../../lib/schema/fields';
import { redisRecord } from '../../lib/schema/typedefs';
import { deprecatedAlias } from '../../lib/schema/deprecated';
import { PLUGIN_NAME } from './state';

const PER_MINUTE_MAX = 1_000_000_000;

/** A plan's limits (defaults, always set) or a tenant override's (null inherits the plan's). */
const limitFields = <O extends boolean>(override: O) => {
  const d = (v: number) =>
    (override ? {} : { default: v, required: true }) as O extends true
      ? object
      : { default: number; required: true };
  return [
    {
      requests_per_minute: field.integer(
        override
          ? 'Replaces the plan’s requests per minute for this tenant (0 turns the limit off).'
          : 'Sustained requests per minute per tenant, cluster-wide (token bucket). 0 turns the limit off.',
        { ...d(0), between: [0, PER_MINUTE_MAX] },
      ),
    },
    {
      request_burst: field.integer(
        'Requests a tenant may send at once after a quiet spell (bucket size). Null: equal to requests_per_minute.',
        { between: [1, PER_MINUTE_MAX] },
      ),
    },
    {
      tokens_per_minute: field.integer(
        override
          ? 'Replaces the plan’s LLM tokens per minute for this tenant (0 turns the limit off).'
          : 'Sustained LLM tokens per minute per tenant (prompt + completion), charged with the request’s estimate and corrected to the observed usage. 0 turns the limit off.',
        { ...d(0), between: [0, PER_MINUTE_MAX] },
      ),
    },
    {
      token_burst: field.integer(
        'LLM tokens a tenant may spend at once (bucket size); a larger estimate is charged this much. Null: equal to tokens_per_minute.',
        { between: [1, PER_MINUTE_MAX] },
      ),
    },
    {
      max_concurrent: field.integer(
        override
          ? 'Replaces the plan’s concurrency cap for this tenant (0 turns the cap off).'
          : 'Requests of one tenant in flight at once, queued ones included, cluster-wide. 0 turns the cap off.',
        { ...d(0), between: [0, 1_000_000] },
      ),
    },
  ] as const satisfies KongSchemaFields;
};

const NAME_MATCH = '^[a-z0-9][a-z0-9_.-]*$';

const REDIS = redisRecord({
  holds: 'every bucket, lease and queue',
  timeout: {
    description:
      'Longest wait for one Redis reply; past it Redis counts as unavailable and on_redis_unavailable applies.',
    default: 250,
  },
});
const REDIS_TIMEOUT = REDIS.fields?.find((f) => 'timeout_ms' in f)?.timeout_ms as KongField;

const ON_REDIS_UNAVAILABLE = field.string(
  'When Redis cannot be reached: `refuse` answers 503 (ratelimit_unavailable); `local` applies the same limits per gateway node (a per-node limiter, announced in the X-RateLimit-Scope header and a metric). Never unlimited.',
  { default: 'refuse', one_of: ['refuse', 'local'], required: true },
);

export const Schema = [
  {
    redis: {
      ...REDIS,
      fields: [
        ...(REDIS.fields ?? []),
        {
          command_timeout_ms: deprecatedAlias(
            PLUGIN_NAME,
            ['redis', 'command_timeout_ms'],
            ['redis', 'timeout_ms'],
            REDIS_TIMEOUT,
          ),
        },
      ],
    },
  },
  { on_redis_unavailable: ON_REDIS_UNAVAILABLE },
  {
    on_redis_error: deprecatedAlias(
      PLUGIN_NAME,
      ['on_redis_error'],
      ['on_redis_unavailable'],
      ON_REDIS_UNAVAILABLE,
    ),
  },
  {
    default_limits: field.record(
      'Limits of a tenant whose plan is not listed in plans.',
      limitFields(false),
      { required: true },
    ),
  },
  {
    plans: field.map(
      'Limits by plan name (the plan tenant-auth put in the TenantContext).',
      field.string('A plan name, as in tenant-auth.', { match: NAME_MATCH, len_max: 64 }),
      field.record('The limits of every tenant on this plan.', limitFields(false)),
      { default: {}, required: true },
    ),
  },
  {
    tenants: field.map(
      'Per-tenant overrides layered over the plan’s limits, by tenant id.',
      field.string('A tenant id, as in the TenantContext.', {
        match: '^[a-z0-9][a-z0-9_-]*$',
        len_max: 64,
      }),
      field.record(
        'Overrides for one tenant; null fields keep the plan’s value.',
        limitFields(true),
      ),
      { default: {}, required: true },
    ),
  },
  {
    queue: field.record(
      'Weighted fair queuing of the shared upstream: its capacity, and how long a request may wait for it.',
      [
        {
          upstream: field.string(
            'Name of the shared capacity; routes that name the same upstream share one queue across the cluster.',
            { default: 'llm', required: true, match: NAME_MATCH, len_max: 64 },
          ),
        },
        {
          max_concurrent: field.integer(
            'Requests the upstream serves at once, all tenants together; beyond it requests wait in weighted fair order. 0: no concurrency capacity.',
            { default: 0, required: true, between: [0, 1_000_000] },
          ),
        },
        {
          tokens_per_minute: field.integer(
            'LLM tokens per minute the upstream grants, all tenants together (e.g. the provider’s org quota). 0: no tokens capacity.',
            { default: 0, required: true, between: [0, PER_MINUTE_MAX] },
          ),
        },
        {
          token_burst: field.integer(
            'Upstream tokens available at once (bucket size). Null: equal to tokens_per_minute.',
            { between: [1, PER_MINUTE_MAX] },
          ),
        },
        {
          max_wait_ms: field.integer(
            'Longest a request waits for upstream capacity before a 503; kept well below the 60 s after which Kong would proxy the request anyway.',
            { default: 10000, required: true, between: [0, 30000] },
          ),
        },
        {
          poll_interval_ms: field.integer(
            'Longest a waiter sleeps between two looks at the queue when no grant message wakes it (a grant is announced on Redis pub/sub, so this is the safety net). A waiter silent for 4 intervals (at least 2 s) has left the queue.',
            { default: 500, required: true, between: [10, 2000] },
          ),
        },
        {
          seat_ttl_seconds: field.integer(
            'Lease of an upstream seat: released in the log phase, or expiring by itself after this (lost log event, dead node). Above the upstream read timeout.',
            { default: 180, required: true, between: [1, 3600] },
          ),
        },
        {
          local_max_concurrent: field.integer(
            'Seats this node alone may use while Redis is unavailable and on_redis_unavailable is `local`. Null: max_concurrent.',
            { between: [1, 1_000_000] },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    flex: field.record(
      'Non-urgent (flex) work: a lower class within each tenant that runs on idle upstream capacity and waits longer instead of being refused.',
      [
        {
          enabled: field.boolean(
            'Honour flex markers (the body’s `service_tier: "flex"` and the header below). Off: every request is urgent.',
            { default: true, required: true },
          ),
        },
        {
          header: field.string(
            'Request header that marks a request as flex when it carries `header_value` (other values are ignored: no header promotes a request). Null: only the body’s service_tier marks flex work.',
            { default: 'X-Request-Priority', len_min: 1, match: '^[A-Za-z0-9-]+$' },
          ),
        },
        {
          header_value: field.string(
            'Value of `header` (case-insensitive) that marks a request as flex.',
            { default: 'low', required: true, len_min: 1, len_max: 64 },
          ),
        },
        {
          allowed_plans: field.array(
            'Plans whose tenants may mark work as flex; other tenants’ markers are ignored (served urgent). Null: every plan.',
            field.string('A plan name (the plan in the TenantContext).', { len_min: 1 }),
          ),
        },
        {
          max_wait_ms: field.integer(
            'Longest a flex request waits (for upstream capacity, and for its tenant’s per-minute limits) before a 503; kept well below Kong’s 60 s.',
            { default: 30000, required: true, between: [0, 45000] },
          ),
        },
        {
          reserved_seats: field.integer(
            'Seats of queue.max_concurrent a flex request leaves free for urgent ones, so an urgent arrival finds a seat at once (capped at max_concurrent - 1).',
            { default: 1, required: true, between: [0, 1_000_000] },
          ),
        },
        {
          wait_for_tenant_limits: field.boolean(
            'A flex request over its tenant’s requests/tokens per minute waits for them (within max_wait_ms) instead of a 429. Concurrency refusals are never waited for.',
            { default: true, required: true },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    estimate: field.record(
      'The shared token estimate, computed here when no earlier plugin published one (token-meter reads the same).',
      [
        {
          default_max_tokens: field.integer(
            'Completion tokens assumed when a request sets no max_tokens.',
            { default: 1024, required: true, between: [1, 1_000_000] },
          ),
        },
        {
          max_tokens_cap: field.integer(
            'Upper bound on a client’s max_tokens: an absurd value cannot reserve the world.',
            { default: 32768, required: true, between: [1, 10_000_000] },
          ),
        },
        {
          unknown_prompt_tokens: field.integer(
            'Prompt tokens assumed when the body cannot be counted (no body, not JSON, unknown shape).',
            { default: 256, required: true, between: [0, 10_000_000] },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    ratelimit_headers: field.boolean(
      'Send the IETF `RateLimit` / `RateLimit-Policy` headers on admitted requests too (always sent on a 429).',
      { default: true, required: true },
    ),
  },
  ...METRICS_FIELDS,
] as const satisfies KongSchemaFields;
