/**
 * tenant-cache configuration: the Kong schema (pure data, with descriptions and defaults) and
 * the typed view of the validated config. Cross-field rules live in `checkConfig`.
 */
import { METRICS_FIELDS, field, type KongSchemaFields } from '../../lib/schema/fields';

/** Longest entry TTL any plan may set; a purge's generation outlives it (store.ts). */
export const MAX_TTL_SECONDS = 7 * 24 * 3600;

export interface PlanCacheConfig {
  enabled: boolean | null;
  ttl_seconds: number | null;
  max_temperature: number | null;
  semantic_enabled: boolean | null;
  similarity_threshold: number | null;
}

export interface SemanticConfig {
  enabled: boolean;
  similarity_threshold: number;
  max_entries_per_tenant: number;
  lookup_timeout_ms: number;
  store_timeout_ms: number;
  max_question_chars: number;
  milvus: {
    address: string;
    collection: string;
    num_partitions: number;
    consistency_level: 'Strong' | 'Session' | 'Bounded' | 'Eventually';
    connect_timeout_ms: number;
  };
  embeddings: {
    url: string;
    model: string;
    dimensions: number;
    send_dimensions: boolean;
    api_key_env: string | null;
    timeout_ms: number;
    cache_ttl_seconds: number;
  };
}

export interface TenantCacheConfig {
  redis_url: string;
  redis_timeout_ms: number;
  key_namespace: string;
  master_key_env: string;
  master_key_file: string | null;
  ephemeral_key_when_missing: boolean;
  enabled: boolean;
  ttl_seconds: number;
  max_temperature: number;
  plans: Record<string, PlanCacheConfig>;
  cache_embeddings: boolean;
  max_entry_bytes: number;
  max_body_bytes: number;
  status_header: boolean;
  semantic: SemanticConfig;
  metrics_port: number;
  metrics_host: string;
  metrics_max_tenants: number;
}

const planFields: KongSchemaFields = [
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
];

const semanticFields: KongSchemaFields = [
  {
    enabled: field.boolean(
      'Answers a near-duplicate question from the tenant’s own earlier answers (Milvus). Off by default; plans may turn it on.',
      { default: false, required: true },
    ),
  },
  {
    similarity_threshold: field.number(
      'Lowest cosine similarity between the new question and a stored one that is answered from the cache.',
      { default: 0.95, between: [0.5, 1], required: true },
    ),
  },
  {
    max_entries_per_tenant: field.integer(
      'Most semantic rows one tenant holds; a store beyond it evicts the rows closest to expiry.',
      { default: 1000, between: [1, 1000000], required: true },
    ),
  },
  {
    lookup_timeout_ms: field.integer(
      'Deadline of one semantic lookup (embedding and search). Past it the request is a miss and goes upstream.',
      { default: 300, between: [10, 10000], required: true },
    ),
  },
  {
    store_timeout_ms: field.integer(
      'Deadline of one semantic store (embedding, insert, index) in the log phase.',
      { default: 3000, between: [10, 30000], required: true },
    ),
  },
  {
    max_question_chars: field.integer(
      'Longest question (the last user message) compared; longer ones use the exact cache only.',
      { default: 4000, between: [1, 100000], required: true },
    ),
  },
  {
    milvus: field.record(
      'The shared semantic-cache collection (its own, `tenant_id` partition key).',
      [
        {
          address: field.string('Milvus gRPC address, `host:port`.', {
            default: '127.0.0.1:19530',
            required: true,
          }),
        },
        {
          collection: field.string(
            'Name of the semantic-cache collection; created on first use if missing.',
            { default: 'kta_semantic_cache', required: true, match: '^[A-Za-z_][A-Za-z0-9_]*$' },
          ),
        },
        {
          num_partitions: field.integer(
            'Hash partitions the tenants are spread over when the collection is created.',
            { default: 64, between: [1, 1024], required: true },
          ),
        },
        {
          consistency_level: field.string(
            'Milvus consistency level of lookups. `Bounded` is fast; `Strong` sees stores at once.',
            {
              default: 'Bounded',
              one_of: ['Strong', 'Session', 'Bounded', 'Eventually'],
              required: true,
            },
          ),
        },
        {
          connect_timeout_ms: field.integer(
            'Deadline for connecting to Milvus and opening the collection (retried after 1 s).',
            { default: 5000, between: [100, 30000], required: true },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    embeddings: field.record(
      'The OpenAI-compatible `/v1/embeddings` endpoint that embeds questions.',
      [
        {
          url: field.string('Full URL of the embeddings endpoint.', {
            default: 'http://127.0.0.1:9000/v1/embeddings',
            required: true,
            match: '^https?://',
          }),
        },
        {
          model: field.string(
            'Embedding model. Recorded with the collection; a collection of another model is refused.',
            { default: 'text-embedding-3-small', required: true, len_min: 1 },
          ),
        },
        {
          dimensions: field.integer(
            'Vector dimension. Recorded with the collection; answers of another size are refused.',
            { default: 64, between: [1, 32768], required: true },
          ),
        },
        {
          send_dimensions: field.boolean(
            'Send `dimensions` in the request (OpenAI text-embedding-3 models honour it).',
            { default: true, required: true },
          ),
        },
        {
          api_key_env: field.string(
            'Environment variable of the plugin server holding the endpoint API key (sent as Bearer).',
          ),
        },
        {
          timeout_ms: field.integer('Deadline of one embeddings request.', {
            default: 2000,
            between: [10, 30000],
            required: true,
          }),
        },
        {
          cache_ttl_seconds: field.integer(
            'How long a question’s embedding stays in the tenant’s Redis embedding cache; 0 disables it.',
            { default: 3600, between: [0, 2592000], required: true },
          ),
        },
      ],
      { required: true },
    ),
  },
];

export const Schema: KongSchemaFields = [
  {
    redis_url: field.string(
      'Redis holding the cache entries: `redis://[[user][:password]@]host[:port][/db]` (may be a vault reference).',
      { default: 'redis://127.0.0.1:6379', required: true, referenceable: true },
    ),
  },
  {
    redis_timeout_ms: field.integer(
      'Deadline of one Redis call. A lookup that misses it is served as a miss (the request goes upstream), never as an error.',
      { default: 100, between: [1, 5000], required: true },
    ),
  },
  {
    key_namespace: field.string(
      'Prefix of every Redis key, so several deployments can share one Redis.',
      { default: 'kta', match: '^[a-z0-9][a-z0-9_-]*$', len_max: 32, required: true },
    ),
  },
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
];

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
    new URL(c.redis_url);
  } catch {
    throw new Error('redis_url is not a URL');
  }
  if (!c.redis_url.startsWith('redis://') && !c.redis_url.startsWith('rediss://')) {
    throw new Error('redis_url must start with redis:// or rediss://');
  }
}
