/**
 * tenant-cache configuration: the Kong schema (pure data, with descriptions and defaults) and
 * the typed view of the validated config, derived from it. Cross-field rules live in `checkConfig`.
 */
import type { ConfigOf } from '../../lib/schema/derive';
import { METRICS_FIELDS, field, type KongSchemaFields } from '../../lib/schema/fields';
import { flatRedisAliases, redisRecord } from '../../lib/schema/typedefs';
import { PLUGIN_NAME } from './pending';
import { semanticFields } from './semantic/schema';

/** Longest entry TTL any plan may set; a purge's generation outlives it (redis.ts). */
export const MAX_TTL_SECONDS = 7 * 24 * 3600;

/** The config readConfig returns, read off the schema (lib/schema/derive.ts): they cannot drift. */
export type TenantCacheConfig = ConfigOf<typeof Schema>;
/** A plan's settings: a null field inherits the top-level one. */
export type PlanCacheConfig = TenantCacheConfig['plans'][string];

const planFields = [
  {
    enabled: field.boolean('Caches the plan’s requests; null keeps the top-level `enabled`.'),
  },
  {
    ttl_seconds: field.integer('Entry lifetime for the plan; null keeps the top-level value.', {
      between: [1, MAX_TTL_SECONDS],
    }),
  },
  {
    max_temperature: field.number(
      'Highest chat `temperature` still cached for the plan; null keeps the top-level value.',
      { between: [0, 2] },
    ),
  },
  {
    semantic_enabled: field.boolean(
      'Turns the semantic cache on or off for the plan; null keeps `semantic.enabled`.',
    ),
  },
  {
    similarity_threshold: field.number(
      'Lowest cosine similarity answered from the semantic cache for the plan; null keeps `semantic.similarity_threshold`.',
      { between: [0.5, 1] },
    ),
  },
] as const satisfies KongSchemaFields;

const REDIS = redisRecord({
  holds: 'the cache entries',
  timeout: {
    description:
      'Deadline of one Redis call. A lookup that misses it is served as a miss (the request goes upstream), never as an error.',
    default: 100,
  },
});

export const Schema = [
  { redis: REDIS },
  ...flatRedisAliases(PLUGIN_NAME, REDIS),
  {
    master_key_env: field.string(
      'Environment variable of the plugin server holding the master secret (32+ bytes, hex or base64). Per-tenant keys are derived from it; keep it out of kong.yml.',
      { default: 'KTA_CACHE_MASTER_KEY', match: '^[A-Za-z_][A-Za-z0-9_]*$', required: true },
    ),
  },
  {
    master_key_file: field.string(
      'File holding the master secret (hex or base64), read when the environment variable is unset. Readable by the plugin server only.',
    ),
  },
  {
    ephemeral_key_when_missing: field.boolean(
      'Without a master secret, use a random one per plugin-server process (entries die with the process and are not shared between nodes). Off: no secret, no caching.',
      { default: false, required: true },
    ),
  },
  {
    enabled: field.boolean('Caches requests of plans that do not say otherwise.', {
      default: true,
      required: true,
    }),
  },
  {
    ttl_seconds: field.integer('Entry lifetime for plans that do not set their own.', {
      default: 300,
      between: [1, MAX_TTL_SECONDS],
      required: true,
    }),
  },
  {
    max_temperature: field.number(
      'Highest chat `temperature` that is cached (an absent temperature means 1). 0: only deterministic requests.',
      { default: 0, between: [0, 2], required: true },
    ),
  },
  {
    plans: field.map(
      'Per-plan overrides of `enabled`, `ttl_seconds`, `max_temperature` and the semantic cache, by plan name.',
      field.string('Plan name.', { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 }),
      field.record('Overrides for one plan; null fields keep the top-level value.', planFields),
      { default: {}, required: true },
    ),
  },
  {
    cache_embeddings: field.boolean('Also caches `/embeddings` requests (always deterministic).', {
      default: true,
      required: true,
    }),
  },
  {
    max_entry_bytes: field.integer(
      'Largest response body stored (after decompression); larger responses are passed on and not stored.',
      { default: 262144, between: [256, 8388608], required: true },
    ),
  },
  {
    max_body_bytes: field.integer(
      'Largest request body read to build a key; larger requests bypass the cache.',
      { default: 1048576, between: [1, 8388608], required: true },
    ),
  },
  {
    status_header: field.boolean(
      'Sends `X-Cache-Status: MISS` or `BYPASS` on requests that were not hits (one more PDK call each). Hits always carry `X-Cache-Status: HIT` and `Age`.',
      { default: true, required: true },
    ),
  },
  {
    semantic: field.record(
      'The semantic cache within the tenant (Milvus): off unless enabled here or per plan.',
      semanticFields,
      { required: true },
    ),
  },
  ...METRICS_FIELDS,
] as const satisfies KongSchemaFields;

/** The policy in force for one plan. */
export interface PlanPolicy {
  readonly enabled: boolean;
  readonly ttlSeconds: number;
  readonly maxTemperature: number;
  readonly semantic: boolean;
  readonly similarityThreshold: number;
}

export function planPolicy(c: TenantCacheConfig, plan: string): PlanPolicy {
  const p = Object.prototype.hasOwnProperty.call(c.plans, plan) ? c.plans[plan] : undefined;
  return {
    enabled: p?.enabled ?? c.enabled,
    ttlSeconds: p?.ttl_seconds ?? c.ttl_seconds,
    maxTemperature: p?.max_temperature ?? c.max_temperature,
    semantic: p?.semantic_enabled ?? c.semantic.enabled,
    similarityThreshold: p?.similarity_threshold ?? c.semantic.similarity_threshold,
  };
}

/** Cross-field rules, with the bad value in the message. Throws on the first violation. */
export function checkConfig(c: TenantCacheConfig): void {
  try {
    new URL(c.redis.url);
  } catch {
    throw new Error('redis.url is not a URL');
  }
  if (!c.redis.url.startsWith('redis://') && !c.redis.url.startsWith('rediss://')) {
    throw new Error('redis.url must start with redis:// or rediss://');
  }
}
