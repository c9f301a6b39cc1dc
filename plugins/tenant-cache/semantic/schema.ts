/**
 * The semantic cache's part of tenant-cache's schema (the `semantic` record): pure data, with
 * descriptions and defaults, and its typed view. Plans turn it on or off (schema.ts `plans`).
 */
import type { ConfigOf } from '../../../lib/schema/derive';
import { field, type KongSchemaFields } from '../../../lib/schema/fields';
import {
  consistencyLevelField,
  embeddingsRecord,
  milvusCollectionFields,
} from '../../../lib/schema/typedefs';

/** The `semantic` record as readConfig returns it, read off the fields below. */
export type SemanticConfig = ConfigOf<typeof semanticFields>;

export const semanticFields = [
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
        ...milvusCollectionFields({
          collection: 'semantic-cache',
          defaultName: 'kta_semantic_cache',
        }),
        consistencyLevelField('lookups', 'stores'),
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
    embeddings: embeddingsRecord({
      embeds: 'questions',
      cacheTtl: {
        description:
          'How long a question’s embedding stays in the tenant’s Redis embedding cache; 0 disables it.',
        default: 3600,
      },
    }),
  },
] as const satisfies KongSchemaFields;
