/**
 * Operator command: purge one tenant's response cache (tenant-cache) in O(1).
 *
 *   npm run cache:purge -- --tenant acme [--redis redis://127.0.0.1:6379] [--namespace kta]
 *                          [--milvus 127.0.0.1:19530] [--semantic-collection kta_semantic_cache]
 *
 * Writes a new random cache generation for the tenant: all its entries, exact and semantic,
 * become unreachable at once (the generation is part of both keys) and expire by their TTL;
 * other tenants are untouched. With `--milvus` (or MILVUS_ADDRESS), the tenant's semantic-cache
 * rows are then also deleted from Milvus. REDIS_URL and KTA_KEY_NAMESPACE are read when the
 * flags are absent. Exit status: 0 purged, 2 bad arguments, 1 Redis or Milvus failed (the
 * generation is written first: a Milvus failure leaves the purge in force, only the rows'
 * deletion to retry).
 */
import { parseArgs } from 'node:util';
import { closeAllRedis, createRedis, waitForRedis } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { isInvalidTenantIdError, parseTenantId, type TenantId } from '../lib/tenant/tenant-id';
import { purgeTenant } from '../plugins/tenant-cache/redis';

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: npm run cache:purge -- --tenant <id> [--redis <url>] [--namespace <ns>] [--milvus <host:port>] [--semantic-collection <name>]\n`,
  );
  process.exit(2);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        tenant: { type: 'string' },
        redis: { type: 'string' },
        namespace: { type: 'string' },
        milvus: { type: 'string' },
        'semantic-collection': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    usage(e instanceof Error ? e.message : String(e));
  }
  let tenant: TenantId;
  try {
    tenant = parseTenantId(values.tenant);
  } catch (e) {
    if (!isInvalidTenantIdError(e)) throw e;
    usage(`--tenant: ${e.reason}`);
  }
  let keyspace;
  try {
    keyspace = createKeyspace(values.namespace ?? process.env.KTA_KEY_NAMESPACE ?? 'kta');
  } catch (e) {
    usage(`--namespace: ${e instanceof Error ? e.message : String(e)}`);
  }
  const url = values.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const client = createRedis({ url, commandTimeoutMs: 5000, log: () => undefined });
  try {
    await waitForRedis(client, 5000);
    const gen = await purgeTenant(client, keyspace, tenant);
    process.stdout.write(`purged the cache of tenant ${tenant} (generation ${gen})\n`);
    const milvusAddress = values.milvus ?? process.env.MILVUS_ADDRESS;
    if (milvusAddress) {
      const collection = values['semantic-collection'] ?? 'kta_semantic_cache';
      const { createMilvus } = await import('../lib/milvus/client');
      const { deleteTenantRows } = await import('../plugins/tenant-cache/semantic/purge');
      const milvus = await createMilvus({ address: milvusAddress, logLevel: 'error' });
      try {
        await deleteTenantRows(milvus, collection, client, keyspace, tenant);
      } finally {
        milvus.closeConnection();
      }
      process.stdout.write(`deleted the semantic-cache rows of ${tenant} from ${collection}\n`);
    }
  } finally {
    await closeAllRedis();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`cache:purge failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
