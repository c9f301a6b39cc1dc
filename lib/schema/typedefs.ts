/**
 * Schema pieces more than one plugin declares, written once (after Kong's `typedefs` and
 * `tools/redis/schema.lua`): the embeddings endpoint record and the Milvus collection's
 * common fields, used by retrieval-injector (the knowledge collection) and tenant-cache's
 * semantic cache (its own collection). A field's description, default and bounds are the same
 * wherever it appears; what differs (what is embedded, the collection's purpose and default
 * name, a deadline's default) is a parameter.
 */
import type { FieldValue } from './derive';
import { deprecatedAlias } from './deprecated';
import { field, type KongField, type KongSchemaFields } from './fields';

/** The config an `embeddingsRecord` holds (lib/retrieval/embedder.ts reads it). */
export type EmbeddingsConfig = FieldValue<ReturnType<typeof embeddingsRecord>>;

/** The OpenAI-compatible `/v1/embeddings` endpoint, with the tenant's embedding cache TTL. */
export function embeddingsRecord(o: {
  /** What is embedded: "questions", "queries". */
  readonly embeds: string;
  readonly cacheTtl: { readonly description: string; readonly default: number };
}) {
  return field.record(
    `The OpenAI-compatible \`/v1/embeddings\` endpoint that embeds ${o.embeds}.`,
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
        cache_ttl_seconds: field.integer(o.cacheTtl.description, {
          default: o.cacheTtl.default,
          between: [0, 2592000],
          required: true,
        }),
      },
    ] as const,
    { required: true },
  );
}

/** The Milvus fields every collection of ours has: where, which, how spread, how consistent. */
export function milvusCollectionFields(o: {
  /** The collection's purpose, in "Name of the … collection". */
  readonly collection: string;
  readonly defaultName: string;
}) {
  return [
    {
      address: field.string('Milvus gRPC address, `host:port`.', {
        default: '127.0.0.1:19530',
        required: true,
      }),
    },
    {
      collection: field.string(
        `Name of the ${o.collection} collection; created on first use if missing.`,
        { default: o.defaultName, required: true, match: '^[A-Za-z_][A-Za-z0-9_]*$' },
      ),
    },
    {
      num_partitions: field.integer(
        'Hash partitions the tenants are spread over when the collection is created.',
        { default: 64, between: [1, 1024], required: true },
      ),
    },
  ] as const satisfies KongSchemaFields;
}

/** The consistency level of a collection's reads (placed by each plugin among its fields). */
export function consistencyLevelField(reads: string, writes: string) {
  return {
    consistency_level: field.string(
      `Milvus consistency level of ${reads}. \`Bounded\` is fast; \`Strong\` sees ${writes} at once.`,
      {
        default: 'Bounded',
        one_of: ['Strong', 'Session', 'Bounded', 'Eventually'],
        required: true,
      },
    ),
  };
}

/** The config a `redisRecord` holds (lib/redis/client.ts connects with it). */
export type RedisConfig = FieldValue<ReturnType<typeof redisRecord>>;

/**
 * The one Redis record every plugin of the chain declares as `redis` (after Kong's
 * tools/redis/schema.lua): the same URL, the same key namespace (lib/redis/keys.ts), and a
 * deadline whose meaning (an outage, a miss) and default are the plugin's.
 */
export function redisRecord(o: {
  /** What this plugin keeps there: "budgets, reservations and the ledger". */
  readonly holds: string;
  readonly timeout: { readonly description: string; readonly default: number };
}) {
  return field.record(
    `The Redis that holds ${o.holds}, shared by all gateway nodes.`,
    [
      {
        url: field.string(
          'Redis URL, `redis://[[user][:password]@]host[:port][/db]` or `rediss://…` (may be a vault reference).',
          { default: 'redis://127.0.0.1:6379', required: true, referenceable: true },
        ),
      },
      {
        key_namespace: field.string(
          'Prefix of every Redis key (lib/redis/keys.ts), so several deployments (or test runs) can share one Redis.',
          { default: 'kta', required: true, match: '^[a-z0-9][a-z0-9_-]*$', len_max: 32 },
        ),
      },
      {
        timeout_ms: field.integer(o.timeout.description, {
          default: o.timeout.default,
          required: true,
          between: [1, 5000],
        }),
      },
    ] as const,
    { required: true },
  );
}

/**
 * The flat Redis fields a plugin declared before the `redis` record (`redis_url`,
 * `redis_timeout_ms`, `key_namespace`), kept as deprecated aliases of the record's fields.
 */
export function flatRedisAliases(plugin: string, record: KongField): KongSchemaFields {
  const of = (name: string): KongField => {
    const f = record.fields?.find((e) => name in e)?.[name];
    if (!f) throw new Error(`the redis record has no ${name}`);
    return f;
  };
  return [
    { redis_url: deprecatedAlias(plugin, ['redis_url'], ['redis', 'url'], of('url')) },
    {
      redis_timeout_ms: deprecatedAlias(
        plugin,
        ['redis_timeout_ms'],
        ['redis', 'timeout_ms'],
        of('timeout_ms'),
      ),
    },
    {
      key_namespace: deprecatedAlias(
        plugin,
        ['key_namespace'],
        ['redis', 'key_namespace'],
        of('key_namespace'),
      ),
    },
  ] as const satisfies KongSchemaFields;
}
