/**
 * The semantic cache's part of tenant-cache's schema (the `semantic` record): pure data, with
 * descriptions and defaults, and its typed view. Plans turn it on or off (schema.ts `plans`).
 */
import { field, type KongSchemaFields } from '../../../lib/schema/fields';

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

export const semanticFields: KongSchemaFields = [
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
