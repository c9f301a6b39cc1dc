/**
 * The process-wide retrieval runtime per configuration: one Milvus client, one opened
 * knowledge store, one embedder. Plugin instances are recreated by Kong (idle, config
 * change), so these live at module level, keyed by the settings that define them.
 *
 * Opening is retried, but not by every request: after a failure, requests within the
 * cool-down fail at once with the same kind of error (unavailable or integrity), so a
 * Milvus outage costs each request microseconds, not a connect timeout.
 *
 * The Milvus SDK (gRPC, protobuf) and the Redis client are loaded on first use, not when the plugin server starts:
 * it doubles the start-up time of the process, which Kong waits for.
 */
import { RuntimeSlots } from '../../lib/plugin/runtime-slots';
import type { ChunkCipher } from '../../lib/retrieval/chunk-cipher';
import type { Retriever } from '../../lib/retrieval/retriever';
import {
  RetrievalUnavailableError,
  isRetrievalIntegrityError,
  isRetrievalUnavailableError,
  withTimeout,
} from '../../lib/retrieval/errors';
import type { RetrievalInjectorConfig } from './schema';

const runtimes = new RuntimeSlots<Retriever>('retrieval');

function runtimeKey(c: RetrievalInjectorConfig): string {
  return JSON.stringify([c.milvus, c.embeddings, c.redis, c.encryption]);
}

async function open(c: RetrievalInjectorConfig, cipher: ChunkCipher): Promise<Retriever> {
  const { createMilvus, MilvusUnavailableError } = await import('../../lib/milvus/client');
  const { KnowledgeStore } = await import('../../lib/retrieval/knowledge-store');
  const { createRedis } = await import('../../lib/redis/client');
  const { createKeyspace } = await import('../../lib/redis/keys');
  const { Embedder, embedderOptions } = await import('../../lib/retrieval/embedder');
  const { Retriever } = await import('../../lib/retrieval/retriever');
  const timeout = c.milvus.connect_timeout_ms;
  // First, so Redis connects while Milvus opens (until then, cache lookups count as errors).
  const redis =
    c.embeddings.cache_ttl_seconds > 0
      ? createRedis({ url: c.redis.url, commandTimeoutMs: c.redis.timeout_ms })
      : null;
  const unavailable = (reason: string) =>
    new RetrievalUnavailableError('milvus', `Milvus at ${c.milvus.address}: ${reason}`);
  const client = await withTimeout(
    createMilvus({ address: c.milvus.address, timeoutMs: timeout, logLevel: 'error' }),
    timeout,
    () => unavailable(`no connection within ${timeout} ms`),
  ).catch((e: unknown) => {
    if (e instanceof MilvusUnavailableError) throw unavailable(e.message);
    throw e;
  });
  try {
    const store = await withTimeout(
      KnowledgeStore.open({
        client,
        collection: {
          name: c.milvus.collection,
          dim: c.embeddings.dimensions,
          numPartitions: c.milvus.num_partitions,
          indexType: c.milvus.index_type,
          metricType: 'COSINE',
          textMaxLength: c.milvus.text_max_bytes,
          embeddingModel: c.embeddings.model,
        },
        cipher,
        consistency: c.milvus.consistency_level,
        searchTimeoutMs: c.milvus.search_timeout_ms,
      }),
      timeout,
      () => unavailable(`collection not opened within ${timeout} ms`),
    );
    const embedder = new Embedder(
      embedderOptions(
        c.embeddings,
        redis ? { redis, keyspace: createKeyspace(c.redis.key_namespace) } : null,
      ),
    );
    return new Retriever(embedder, store);
  } catch (e) {
    client.closeConnection();
    if (isRetrievalIntegrityError(e) || isRetrievalUnavailableError(e)) throw e;
    throw unavailable(e instanceof Error ? e.message : String(e));
  }
}

/** The runtime for this configuration, opening it (again, after the cool-down) if needed. */
export function retrieverFor(c: RetrievalInjectorConfig, cipher: ChunkCipher): Promise<Retriever> {
  return runtimes.get(runtimeKey(c), () => open(c, cipher));
}
