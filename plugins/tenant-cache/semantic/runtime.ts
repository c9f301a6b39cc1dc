/**
 * The process-wide semantic-cache runtime per configuration: one Milvus client, one opened
 * collection, one embedder (with the tenant-keyed embedding cache in Redis). Plugin instances
 * are recreated by Kong, so these live at module level, keyed by the settings that define
 * them. Opening is retried after a cool-down, not by every request: during a Milvus outage a
 * lookup fails at once (a miss), it does not wait for a connect timeout each time.
 *
 * The Milvus SDK (gRPC) is loaded on first use: plans without the semantic cache never load it.
 */
import { RuntimeSlots } from '../../../lib/plugin/runtime-slots';
import type { RedisClient } from '../../../lib/redis/client';
import type { Keyspace } from '../../../lib/redis/keys';
import type { SemanticStore } from './collection';
import { SemanticUnavailableError, withinDeadline } from './errors';
import type { SemanticConfig } from './schema';

const runtimes = new RuntimeSlots<SemanticStore>('semantic-cache');

/** The semantic collection this configuration opens (and creates when missing). */
export function semanticCollectionSpec(c: SemanticConfig) {
  return {
    name: c.milvus.collection,
    dim: c.embeddings.dimensions,
    numPartitions: c.milvus.num_partitions,
    metricType: 'COSINE',
    textMaxLength: 65535,
    embeddingModel: c.embeddings.model,
  } as const;
}

async function open(
  c: SemanticConfig,
  redis: RedisClient,
  keyspace: Keyspace,
): Promise<SemanticStore> {
  const { createMilvus } = await import('../../../lib/milvus/client');
  const { Embedder, embedderOptions } = await import('../../../lib/retrieval/embedder');
  const { SemanticStore } = await import('./collection');
  const timeout = c.milvus.connect_timeout_ms;
  const client = await withinDeadline(
    createMilvus({ address: c.milvus.address, timeoutMs: timeout, logLevel: 'error' }),
    timeout,
    'connecting to Milvus',
  ).catch((e: unknown) => {
    throw new SemanticUnavailableError(
      'milvus',
      `Milvus at ${c.milvus.address}: ${e instanceof Error ? e.message : String(e)}`,
    );
  });
  try {
    const embedder = new Embedder(embedderOptions(c.embeddings, { redis, keyspace }));
    return await withinDeadline(
      SemanticStore.open({
        client,
        collection: semanticCollectionSpec(c),
        embedder,
        redis,
        keyspace,
        consistency: c.milvus.consistency_level,
      }),
      timeout,
      'opening the semantic collection',
    );
  } catch (e) {
    client.closeConnection();
    throw e;
  }
}

/**
 * Loads the semantic store's module, and with it the Milvus SDK, before a deadline starts: the
 * SDK's first load blocks the event loop for about 0.3 s, as long as a lookup's default
 * deadline, and would otherwise make the first lookup of every process a timeout.
 */
export async function loadSemanticStore(): Promise<void> {
  await import('./collection');
}

/** The store for this configuration, opening it (again, after the cool-down) if needed. */
export function semanticStoreFor(
  c: SemanticConfig,
  redis: RedisClient,
  keyspace: Keyspace,
): Promise<SemanticStore> {
  const key = JSON.stringify([c.milvus, c.embeddings, keyspace.namespace]);
  return runtimes.get(key, () => open(c, redis, keyspace));
}
