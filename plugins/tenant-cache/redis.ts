/**
 * The cache's Redis operations: one round trip per lookup (MGET of the two generations and
 * the entry, all in the tenant's hash slot), one per store (SET with a TTL), one per purge.
 * Every call runs under the client's deadline (`withDeadline`); callers turn an unavailable
 * Redis into a miss.
 */
import { randomBytes } from 'node:crypto';
import { withDeadline, type RedisClient } from '../../lib/redis/client';
import type { Keyspace, RedisKey } from '../../lib/redis/keys';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { generation, type Generations } from './entry';
import { MAX_TTL_SECONDS } from './schema';

export interface Lookup {
  readonly generations: Generations;
  /** The entry's value, or null when there is none. */
  readonly value: string | null;
}

/** The generations in force and the entry, in one MGET. */
export async function lookup(
  client: RedisClient,
  keyspace: Keyspace,
  ctx: TenantContext,
  entry: RedisKey,
): Promise<Lookup> {
  const reply = await withDeadline(
    client,
    client.mGet([
      keyspace.knowledgeGeneration(ctx.tenantId),
      keyspace.cacheGeneration(ctx.tenantId),
      entry,
    ]),
  );
  const [knowledge, cache, value] = reply as Array<string | null>;
  return {
    generations: { knowledge: generation(knowledge), cache: generation(cache) },
    value: typeof value === 'string' ? value : null,
  };
}

export async function storeEntry(
  client: RedisClient,
  entry: RedisKey,
  value: string,
  ttlSeconds: number,
): Promise<void> {
  await withDeadline(
    client,
    client.set(entry, value, { expiration: { type: 'EX', value: ttlSeconds } }),
  );
}

/**
 * How long a purge's generation lives: longer than any entry can (MAX_TTL_SECONDS), so an
 * entry written before the purge has expired before the generation reverts to its default.
 * Generations are random, so a value never comes back once replaced.
 */
export const PURGE_GENERATION_TTL_SECONDS = MAX_TTL_SECONDS + 24 * 3600;

/**
 * Purges every cache entry of one tenant in O(1): a new random cache generation. The old
 * entries stay in Redis until their TTL, unreachable. Returns the new generation.
 */
export async function purgeTenant(
  client: RedisClient,
  keyspace: Keyspace,
  tenant: TenantId,
): Promise<string> {
  const gen = `p${randomBytes(12).toString('hex')}`;
  await withDeadline(
    client,
    client.set(keyspace.cacheGeneration(tenant), gen, {
      expiration: { type: 'EX', value: PURGE_GENERATION_TTL_SECONDS },
    }),
  );
  return gen;
}
