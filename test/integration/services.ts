/**
 * Where the real services are, and connecting to them with a clear failure (never a skip)
 * when they are not running. Start them with `scripts/services/all.sh start`.
 */
import { randomBytes } from 'node:crypto';
import type { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { createMilvus } from '../../lib/milvus/client';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const MILVUS_ADDRESS = process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530';

/**
 * Tests share one Redis with other suites running in parallel on a loaded machine: a longer
 * command timeout than production's 250 ms keeps them from failing on scheduling hiccups.
 */
export const TEST_COMMAND_TIMEOUT_MS = 3000;

let sharedRedis: Promise<RedisClient> | undefined;

/** The process's shared client for REDIS_URL, once it is connected. */
export function connectRedis(): Promise<RedisClient> {
  sharedRedis ??= connectSharedRedis();
  return sharedRedis;
}

async function connectSharedRedis(): Promise<RedisClient> {
  const client = createRedis({ url: REDIS_URL, commandTimeoutMs: TEST_COMMAND_TIMEOUT_MS });
  try {
    await waitForRedis(client, 5000);
  } catch {
    sharedRedis = undefined;
    throw new Error(
      `Redis is not reachable at ${REDIS_URL} (REDIS_URL). ` +
        'Start it with `scripts/services/redis.sh start` (after `install`).',
    );
  }
  return client;
}

/** A keyspace no other test uses: `it-<random>`. */
export function randomKeyspace(): Keyspace {
  return createKeyspace(`it-${randomBytes(6).toString('hex')}`);
}

/** Deletes every key of `keyspace` (test teardown). */
export async function deleteKeyspace(client: RedisClient, keyspace: Keyspace): Promise<void> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: keyspace.pattern(), COUNT: 100 })) {
    keys.push(...batch);
  }
  if (keys.length > 0) await client.unlink(keys);
}

export async function connectMilvus(): Promise<MilvusClient> {
  let reason: string;
  try {
    const client = await createMilvus({ address: MILVUS_ADDRESS, timeoutMs: 30_000 });
    const health = await client.checkHealth();
    if (health.isHealthy) return client;
    client.closeConnection();
    reason = `unhealthy: ${JSON.stringify(health.reasons)}`;
  } catch (err) {
    reason = err instanceof Error ? err.message : String(err);
  }
  throw new Error(
    `Milvus is not reachable at ${MILVUS_ADDRESS} (MILVUS_ADDRESS): ${reason}. ` +
      'Start it with `scripts/services/milvus.sh start` (after `install`).',
  );
}
