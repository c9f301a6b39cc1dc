/**
 * Schema pieces more than one plugin declares, written once (after Kong's `typedefs` and
 * `tools/redis/schema.lua`): the embeddings endpoint record and the Milvus collection's
 * common fields, used by retrieval-injector (the knowledge collection) and tenant-cache's
 * semantic cache (its own collection). A field's description, default and bounds are the same
 * wherever it appears; what differs (what is embedded, the collection's purpose and default
 * name, a deadline's default) is a parameter.
 */
import { field, type KongField, type KongSchemaFields } from './fields';

/** The config an `embeddingsRecord` holds (lib/retrieval/embedder.ts reads it). */
export interface EmbeddingsConfig {
  url: string;
  model: string;
  dimensions: number;
  send_dimensions: boolean;
  api_key_env: string | null;
  timeout_ms: number;
  cache_ttl_seconds: number;
}

/** The OpenAI-compatible `/v1/embeddings` endpoint, with the tenant's embedding cache TTL. */
export function embeddingsRecord(o: {
  /** What is embedded: "questions", "queries". */
  readonly embeds: string;
  readonly cacheTtl: { readonly description: string; readonly default: number };
}): KongField {
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
    ],
    { required: true },
  );
}

/** The Milvus fields every collection of ours has: where, which, how spread, how consistent. */
export function milvusCollectionFields(o: {
  /** The collection's purpose, in "Name of the … collection". */
  readonly collection: string;
  readonly defaultName: string;
}): KongSchemaFields {
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
  ];
}

/** The consistency level of a collection's reads (placed by each plugin among its fields). */
export function consistencyLevelField(reads: string, writes: string): Record<string, KongField> {
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
