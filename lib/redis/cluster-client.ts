/**
 * node-redis's cluster client under the policy of every connection of ours
 * (connection-policy.ts), with what a standalone client does by itself added.
 */
import { createCluster, type RedisClusterType } from 'redis';
import {
  MAX_PENDING_COMMANDS,
  NO_PER_COMMAND_TIMER,
  messageOf,
  reconnectDelayMs,
} from './connection-policy';
import type { RedisClusterClient, ScanKeysOptions } from './shapes';
import type { RedisTarget } from './url';

/**
 * After the first reconnection attempt to a node, how long until the cluster client reads the
 * topology again (and every such interval while the node stays down): how soon after a
 * replica has taken over the failed master's slots are served again. node-redis's default is
 * 5 s; a topology read is one CLUSTER SLOTS on a live node.
 */
export const CLUSTER_TOPOLOGY_REFRESH_MS = 500;
/** MOVED/ASK redirections followed per command; more means a topology in flux: fail fast. */
export const MAX_CLUSTER_REDIRECTIONS = 5;

/**
 * Adds `scanIterator` to a cluster client, and to the clients its `duplicate` makes (the fair
 * queue's grant listener subscribes on a duplicate).
 */
function withClusterScan(cluster: RedisClusterType): RedisClusterClient {
  async function* scanIterator(options?: ScanKeysOptions): AsyncGenerator<string[], void, unknown> {
    // A SCAN cursor belongs to one node: each master is scanned to its end in turn. A slot
    // migrating meanwhile may yield its keys twice or not at all, as SCAN may on one node.
    for (const master of [...cluster.masters]) {
      const node = await cluster.nodeClient(master);
      for await (const keys of node.scanIterator(options)) yield keys;
    }
  }
  // Bound before Object.assign shadows it with the wrapper below.
  const duplicateCluster = cluster.duplicate.bind(cluster);
  const duplicate = (): RedisClusterClient => withClusterScan(duplicateCluster());
  return Object.assign(cluster, { scanIterator, duplicate });
}

/**
 * node-redis's cluster client under the same policy as a standalone one. Every node
 * connection gets the deadlines, the bounded queue, no offline queue and the endless
 * reconnection; the cluster client adds what a standalone one does by itself:
 * - its first connection (reading the topology from a seed node) is retried here with the
 *   same backoff: node-redis gives up after one pass over the seeds, and a plugin server that
 *   started while Redis was down must heal when it comes back;
 * - `scanIterator`, over every master.
 * 'error' (topology reads) and 'node-error' (one node's connection) are logged once per
 * outage of the cluster or of that node.
 */
export function clusterClient(
  target: Extract<RedisTarget, { kind: 'cluster' }>,
  connectTimeoutMs: number,
  log: (message: string) => void,
  where: string,
): { readonly client: RedisClusterClient; stop(): void } {
  const cluster = createCluster({
    rootNodes: target.nodes.map((n) => ({ socket: { host: n.host, port: n.port } })),
    defaults: {
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      disableOfflineQueue: true,
      commandsQueueMaxLength: MAX_PENDING_COMMANDS,
      socket: {
        connectTimeout: connectTimeoutMs,
        reconnectStrategy: (retries: number) => reconnectDelayMs(retries),
        ...(target.tls ? { tls: true as const } : {}),
      },
    },
    RESP: 3,
    commandOptions: NO_PER_COMMAND_TIMER,
    maxCommandRedirections: MAX_CLUSTER_REDIRECTIONS,
    topologyRefreshOnReconnectionAttemptStrategy: CLUSTER_TOPOLOGY_REFRESH_MS,
  });

  let outage = false;
  const reportOutage = (err: unknown): void => {
    if (outage) return;
    outage = true;
    log(`[redis] ${where} cluster unavailable, retrying in the background: ${messageOf(err)}`);
  };
  const endOutage = (): void => {
    if (outage) log(`[redis] ${where} cluster reachable again`);
    outage = false;
  };
  cluster.on('error', reportOutage);
  cluster.on('connect', endOutage);
  const nodesDown = new Set<string>();
  const address = (node: unknown): string => {
    const n = node as { host?: unknown; port?: unknown } | undefined;
    return `${String(n?.host)}:${String(n?.port)}`;
  };
  cluster.on('node-error', (err: unknown, node: unknown) => {
    const a = address(node);
    if (nodesDown.has(a)) return;
    nodesDown.add(a);
    log(`[redis] ${where} node ${a} unavailable, retrying in the background: ${messageOf(err)}`);
  });
  cluster.on('node-ready', (node: unknown) => {
    if (nodesDown.delete(address(node))) log(`[redis] ${where} node ${address(node)} reconnected`);
    endOutage();
  });
  // A node dropped from the topology (a failed master, replaced by its replica) ends here.
  cluster.on('node-disconnect', (node: unknown) => nodesDown.delete(address(node)));

  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const connect = (attempt: number): void => {
    cluster.connect().then(
      () => undefined,
      (err: unknown) => {
        if (stopped) return;
        reportOutage(err);
        retry = setTimeout(() => connect(attempt + 1), reconnectDelayMs(attempt));
        retry.unref();
      },
    );
  };

  const client = withClusterScan(cluster);
  connect(0);
  return {
    client,
    stop: () => {
      stopped = true;
      clearTimeout(retry);
    },
  };
}
