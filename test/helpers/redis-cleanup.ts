/**
 * Test teardown: delete every key matching a glob, on a single Redis or on a Redis Cluster
 * (`redis://host:port?cluster=1…`, lib/redis/client.ts), whichever the URL names.
 *
 * Single node: one DEL per SCAN batch, as the helpers always did. Cluster: a SCAN cursor
 * belongs to one node, so each master is scanned in turn, and a multi-key DEL whose keys hash
 * to different slots is refused by Redis (CROSSSLOT): each batch is split by slot, one DEL per
 * slot (a tenant's keys share a hash tag, so a batch is a handful of DELs, not one per key).
 * node-redis 6.3's cluster client would also split a DEL by itself (its `multi_shard` request
 * policy); grouping here keeps every DEL on one slot whatever the client does.
 */
import { createClient, createCluster } from 'redis';
import { parseRedisUrl } from '../../lib/redis/client';
import { hashSlot } from '../../lib/redis/hash-slot';

const SCAN_COUNT = 500;

/** `keys` grouped by Redis Cluster slot, each group fit for one multi-key command. */
export function groupBySlot(keys: readonly string[]): string[][] {
  const groups = new Map<number, string[]>();
  for (const key of keys) {
    const slot = hashSlot(key);
    const group = groups.get(slot);
    if (group) group.push(key);
    else groups.set(slot, [key]);
  }
  return [...groups.values()];
}

/** Deletes every key matching `match` (a SCAN glob); resolves with how many were deleted. */
export async function deleteKeysMatching(url: string, match: string): Promise<number> {
  const target = parseRedisUrl(url);
  let deleted = 0;
  if (target.kind === 'standalone') {
    const redis = createClient({ url: target.url });
    await redis.connect();
    try {
      for await (const batch of redis.scanIterator({ MATCH: match, COUNT: SCAN_COUNT })) {
        if (batch.length > 0) deleted += await redis.del(batch);
      }
    } finally {
      await redis.close();
    }
    return deleted;
  }
  const cluster = createCluster({
    rootNodes: target.nodes.map((n) => ({ socket: { host: n.host, port: n.port } })),
    defaults: {
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      ...(target.tls ? { socket: { tls: true as const } } : {}),
    },
  });
  await cluster.connect();
  try {
    for (const master of [...cluster.masters]) {
      const node = await cluster.nodeClient(master);
      for await (const batch of node.scanIterator({ MATCH: match, COUNT: SCAN_COUNT })) {
        // Through the cluster client, so a slot that moved meanwhile is followed (MOVED).
        for (const group of groupBySlot(batch)) deleted += await cluster.del(group);
      }
    }
  } finally {
    await cluster.close();
  }
  return deleted;
}
