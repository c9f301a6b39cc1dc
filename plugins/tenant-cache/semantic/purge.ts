/**
 * The purge command's part in the semantic cache (scripts/cache-purge.ts): the generation bump
 * has already put the tenant's rows out of reach; this deletes them and the tenant's index.
 */
import { ErrorCode, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import { tenantFilter } from '../../../lib/milvus/tenant-filter';
import type { RedisClient } from '../../../lib/redis/client';
import type { Keyspace } from '../../../lib/redis/keys';
import type { TenantId } from '../../../lib/tenant/tenant-id';

/** Deletes every semantic-cache row of `tenant` from `collection` and its Redis index. */
export async function deleteTenantRows(
  client: MilvusClient,
  collection: string,
  redis: RedisClient,
  keyspace: Keyspace,
  tenant: TenantId,
): Promise<void> {
  const has = await client.hasCollection({ collection_name: collection });
  if (has.value) {
    const res = await client.deleteEntities({
      collection_name: collection,
      filter: tenantFilter(tenant),
    });
    if (res.status.error_code !== ErrorCode.SUCCESS) {
      throw new Error(`deleting the semantic rows of ${tenant} failed: ${res.status.reason}`);
    }
  }
  await redis.del(keyspace.semanticIndex(tenant));
}
