/**
 * The Redis client every plugin uses: node-redis 6, configured to fail fast.
 *
 * A plugin runs inside a request. If Redis is slow or down, the plugin must find out within a
 * few hundred milliseconds and apply its own failure policy (fail open to a local limiter,
 * refuse, reserve locally) — not hold the request for node-redis's 5 s default or queue
 * commands until a reconnect that may never come. Hence:
 * - a short per-call deadline (250 ms by default), kept by `withDeadline`, through which lib
 *   code (`runScript`, the stores) makes its calls: one sweep per client (`DeadlineSweep`),
 *   not a timer per command. node-redis 6's own `timeout` command option is turned off (it
 *   defaults to 5 s): it makes an `AbortSignal.timeout` per command (≈ 3.5 % of a plugin's
 *   CPU, kong-facts.md) and only bounds the wait BEFORE a command is written to the socket
 *   (its timer is removed once written; read @redis/client commands-queue.js), so a Redis that
 *   accepts a command and answers late is not covered by it anyway; the sweep bounds both
 *   halves. A call given up on before node-redis wrote it may still be written later, as one
 *   already written may still run: a deadline means "outcome unknown", as before. A command
 *   sent without `withDeadline` (admin paths) has no deadline of its own: it fails when the
 *   connection does,
 * - a bounded command queue, so a hung server cannot make pending commands pile up,
 * - the offline queue disabled: while disconnected, commands reject at once with
 *   `ClientOfflineError` instead of waiting in memory,
 * - reconnection forever, with exponential backoff capped at 2 s plus jitter, so the client
 *   heals by itself when Redis comes back,
 * - 'error' events logged once per outage, never thrown (an unhandled 'error' event would
 *   crash the plugin server, taking every plugin instance in it down).
 *
 * One client per process per (url, timeouts): Kong runs each plugin in its own plugin-server
 * process, and every plugin instance (route, service) in it shares the client.
 *
 * Redis Cluster: the same URL fields take `redis://host:port?cluster=1[&nodes=host:port,...]`
 * (see `parseRedisUrl`), and the client is node-redis's cluster client under the same policy:
 * every command goes to the master of its key's slot (a script to the slot of its first key;
 * keys.ts puts all keys of one call in one slot), MOVED and ASK are followed by node-redis,
 * and a master that stops answering fails its commands at once (each node's connection has
 * no offline queue) until its replica has taken over and the topology is read again.
 */
import { createClient, createCluster, type RedisClientType, type RedisClusterType } from 'redis';
import { DeadlineSweep } from './deadline-sweep';

/** SCAN's options, as node-redis takes them. */
export interface ScanKeysOptions {
  readonly MATCH?: string;
  readonly COUNT?: number;
  readonly TYPE?: string;
}

/** `scanIterator` as both client shapes offer it (node-redis's own binds `this` to its class). */
interface ScanAllKeys {
  scanIterator(options?: ScanKeysOptions): AsyncGenerator<string[], void, unknown>;
}

/** A client of one Redis server (`redis://host:port`). */
export type RedisStandaloneClient = Omit<RedisClientType, 'scanIterator'> & ScanAllKeys;

/**
 * A Redis Cluster client (`redis://host:port?cluster=1`). node-redis's cluster client has no
 * `scanIterator` (a SCAN cursor belongs to one node); `createRedis` adds one that scans every
 * master in turn, to it and to its duplicates, so code that scans (chargeback, test teardown)
 * runs unchanged.
 */
export type RedisClusterClient = Omit<RedisClusterType, 'duplicate'> &
  ScanAllKeys & {
    duplicate(): RedisClusterClient;
  };

/**
 * What `createRedis` returns: either shape. Commands, scripts (`evalSha`/`eval` with `keys`),
 * `duplicate`/`subscribe` and `scanIterator` exist on both; the cluster routes each by its
 * first key's slot.
 */
export type RedisClient = RedisStandaloneClient | RedisClusterClient;

export interface RedisOptions {
  /**
   * `redis://[[user][:password]@]host[:port][/db]`, or for Redis Cluster
   * `redis://[[user][:password]@]host:port?cluster=1[&nodes=host:port,host:port]`
   * (`rediss://` for TLS); see `parseRedisUrl`.
   */
  readonly url: string;
  /** Per-command timeout; default 250 ms. */
  readonly commandTimeoutMs?: number;
  /** TCP connect timeout per attempt; default 1000 ms. */
  readonly connectTimeoutMs?: number;
  /** Where connection trouble is reported; default `console.error` (Kong's error log). */
  readonly log?: (message: string) => void;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 250;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
/** Distinct (url, timeouts) combinations one process may hold; more means a config bug. */
export const MAX_CACHED_CLIENTS = 8;

/** Commands waiting to be written or answered, per client; beyond it, calls fail at once. */
export const MAX_PENDING_COMMANDS = 10_000;

/**
 * node-redis 6.3 gives every command a 5 s `timeout` unless told otherwise (client/index.js:
 * `{ timeout: DEFAULT_COMMAND_TIMEOUT, ...commandOptions }`), i.e. an AbortSignal.timeout each;
 * 0 turns it off (commands-queue.js arms one only for a truthy timeout). The deadline is
 * `withDeadline`'s sweep instead.
 */
const NO_PER_COMMAND_TIMER = { timeout: 0 } as const;

const RECONNECT_BASE_MS = 50;
const RECONNECT_CAP_MS = 2000;
const RECONNECT_JITTER_MS = 100;

/**
 * After the first reconnection attempt to a node, how long until the cluster client reads the
 * topology again (and every such interval while the node stays down): how soon after a
 * replica has taken over the failed master's slots are served again. node-redis's default is
 * 5 s; a topology read is one CLUSTER SLOTS on a live node.
 */
export const CLUSTER_TOPOLOGY_REFRESH_MS = 500;
/** MOVED/ASK redirections followed per command; more means a topology in flux: fail fast. */
export const MAX_CLUSTER_REDIRECTIONS = 5;

const clients = new Map<string, RedisClient>();
/** Each client's deadline keeper: one sweep timer per client, none per command. */
const sweeps = new WeakMap<RedisClient, DeadlineSweep>();
const clusters = new WeakSet<RedisClient>();
/** Stops a cluster client's connect retries (closeAllRedis). */
const stopRetries = new WeakMap<RedisClient, () => void>();

export { RedisDeadlineError } from './deadline-sweep';

function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${value}`);
  }
  return value;
}

/** Exponential backoff, capped; never gives up, so the client recovers on its own. */
export function reconnectDelayMs(retries: number): number {
  const exp = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.min(retries, 16));
  return exp + Math.floor(Math.random() * RECONNECT_JITTER_MS);
}

/** Where a client connects, from its URL. */
export type RedisTarget =
  | { readonly kind: 'standalone'; readonly url: string }
  | {
      readonly kind: 'cluster';
      /** Seed nodes: the topology is discovered from the first that answers. */
      readonly nodes: ReadonlyArray<{ readonly host: string; readonly port: number }>;
      readonly username?: string;
      readonly password?: string;
      readonly tls: boolean;
    };

export class InvalidRedisUrlError extends Error {
  override readonly name = 'InvalidRedisUrlError';
}

const CLUSTER_FLAG_VALUES: ReadonlyMap<string, boolean> = new Map([
  ['1', true],
  ['true', true],
  ['yes', true],
  ['0', false],
  ['false', false],
  ['no', false],
]);

function seedNode(hostPort: string, url: string): { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(`redis://${hostPort}`);
  } catch {
    throw new InvalidRedisUrlError(`bad node ${JSON.stringify(hostPort)} in ${redactUrl(url)}`);
  }
  if (!u.hostname || !u.port || u.username || u.pathname !== '' || u.search) {
    throw new InvalidRedisUrlError(
      `a cluster node must be host:port, got ${JSON.stringify(hostPort)} in ${redactUrl(url)}`,
    );
  }
  // URL keeps an IPv6 host in brackets; sockets want it bare.
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port) };
}

/**
 * Standalone or cluster, from the URL alone, so no plugin schema changes: the `redis://` and
 * `rediss://` URLs every plugin already takes name a cluster with the query `cluster=1`, the
 * URL's host:port being one seed node and `nodes` (comma-separated host:port) more seeds,
 * tried when the first does not answer. Credentials and `rediss://` (TLS) apply to every
 * node. A cluster has one database: a path other than `/` or `/0` is refused, as is any other
 * query parameter (a typo must not silently select a standalone client).
 */
export function parseRedisUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidRedisUrlError(`Redis URL is not a URL: ${redactUrl(url)}`);
  }
  const flag = u.searchParams.get('cluster');
  if (flag === null) return { kind: 'standalone', url };
  const cluster = CLUSTER_FLAG_VALUES.get(flag.toLowerCase());
  if (cluster === undefined) {
    throw new InvalidRedisUrlError(`cluster=${flag} in ${redactUrl(url)}: use cluster=1 or 0`);
  }
  for (const name of u.searchParams.keys()) {
    if (name !== 'cluster' && name !== 'nodes') {
      throw new InvalidRedisUrlError(`unknown parameter ${name} in ${redactUrl(url)}`);
    }
  }
  if (!cluster) {
    if (u.searchParams.has('nodes')) {
      throw new InvalidRedisUrlError(`nodes= needs cluster=1 in ${redactUrl(url)}`);
    }
    u.search = '';
    return { kind: 'standalone', url: u.toString() };
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new InvalidRedisUrlError(`a cluster URL starts with redis:// or rediss://`);
  }
  if (u.pathname !== '' && u.pathname !== '/' && u.pathname !== '/0') {
    throw new InvalidRedisUrlError(
      `Redis Cluster has only database 0, got ${u.pathname} in ${redactUrl(url)}`,
    );
  }
  const first = seedNode(`${u.hostname}:${u.port || '6379'}`, url);
  const more = (u.searchParams.get('nodes') ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n.length > 0)
    .map((n) => seedNode(n, url));
  return {
    kind: 'cluster',
    nodes: [first, ...more],
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    tls: u.protocol === 'rediss:',
  };
}

/** True for a client made for a cluster URL. */
export function isRedisCluster(client: RedisClient): client is RedisClusterClient {
  return clusters.has(client);
}

/** The URL without its password, fit for a log line. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable redis url>';
  }
}

/**
 * The process-wide client for these options, created and connecting on first use.
 * Returns at once: until the connection is ready, commands reject with `ClientOfflineError`.
 */
export function createRedis(opts: RedisOptions): RedisClient {
  const commandTimeoutMs = positiveMs(
    opts.commandTimeoutMs,
    DEFAULT_COMMAND_TIMEOUT_MS,
    'commandTimeoutMs',
  );
  const connectTimeoutMs = positiveMs(
    opts.connectTimeoutMs,
    DEFAULT_CONNECT_TIMEOUT_MS,
    'connectTimeoutMs',
  );
  const cacheKey = `${opts.url}|${commandTimeoutMs}|${connectTimeoutMs}`;
  const cached = clients.get(cacheKey);
  if (cached) return cached;
  if (clients.size >= MAX_CACHED_CLIENTS) {
    throw new Error(
      `more than ${MAX_CACHED_CLIENTS} distinct Redis configurations in one process; ` +
        'plugins should share one Redis URL and timeout setting',
    );
  }

  const target = parseRedisUrl(opts.url);
  const log = opts.log ?? ((m: string) => console.error(m));
  const where = redactUrl(opts.url);
  const client =
    target.kind === 'cluster'
      ? clusterClient(target, connectTimeoutMs, log, where)
      : standaloneClient(target.url, connectTimeoutMs, log, where);
  clients.set(cacheKey, client);
  sweeps.set(client, new DeadlineSweep(commandTimeoutMs));
  return client;
}

function standaloneClient(
  url: string,
  connectTimeoutMs: number,
  log: (message: string) => void,
  where: string,
): RedisStandaloneClient {
  const client: RedisStandaloneClient = createClient({
    url,
    RESP: 3,
    disableOfflineQueue: true,
    commandsQueueMaxLength: MAX_PENDING_COMMANDS,
    commandOptions: NO_PER_COMMAND_TIMER,
    socket: {
      connectTimeout: connectTimeoutMs,
      reconnectStrategy: (retries: number) => reconnectDelayMs(retries),
    },
  });

  // node-redis emits 'error' on every failed reconnect attempt; one line per outage is enough.
  let outage = false;
  client.on('error', (err: unknown) => {
    if (outage) return;
    outage = true;
    log(`[redis] ${where} unavailable, retrying in the background: ${messageOf(err)}`);
  });
  client.on('ready', () => {
    if (outage) log(`[redis] ${where} reconnected`);
    outage = false;
  });

  client.connect().catch((err: unknown) => {
    // Only reached when the client is closed before it ever connected.
    log(`[redis] ${where} connect abandoned: ${messageOf(err)}`);
  });
  return client;
}

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

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
function clusterClient(
  target: Extract<RedisTarget, { kind: 'cluster' }>,
  connectTimeoutMs: number,
  log: (message: string) => void,
  where: string,
): RedisClusterClient {
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
  clusters.add(client);
  stopRetries.set(client, () => {
    stopped = true;
    clearTimeout(retry);
  });
  connect(0);
  return client;
}

/**
 * Settles like `command`, or rejects with `RedisDeadlineError` once the client's command
 * timeout has passed (give or take the sweep's tick, a quarter of it). The command itself stays
 * in flight; its late reply is dropped. No timer is made per call (see DeadlineSweep).
 */
export function withDeadline<T>(client: RedisClient, command: Promise<T>): Promise<T> {
  let sweep = sweeps.get(client);
  if (!sweep) {
    // A client this module did not make (a test's own): the default deadline.
    sweep = new DeadlineSweep(DEFAULT_COMMAND_TIMEOUT_MS);
    sweeps.set(client, sweep);
  }
  return sweep.race(command);
}

/** Resolves once the client is connected; rejects with a clear message after `timeoutMs`. */
export function waitForRedis(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.isReady) return Promise.resolve();
  // A cluster client is ready once it has read the topology: node-redis says 'connect'.
  const event = isRedisCluster(client) ? 'connect' : 'ready';
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off(event, onReady);
      reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    client.once(event, onReady);
  });
}

const everReady = new WeakSet<RedisClient>();

/**
 * Gives the client's very first connection up to `timeoutMs`: the first requests after a
 * plugin server starts (its plugin instance, and so its client, is created by the first
 * request) must not be refused for a connection a few milliseconds from ready. Once the
 * client has been ready, returns at once: during an outage callers fail fast.
 */
export async function untilFirstConnected(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.isReady) {
    everReady.add(client);
    return;
  }
  if (everReady.has(client)) return;
  await waitForRedis(client, timeoutMs).then(
    () => everReady.add(client),
    () => undefined,
  );
}

/** Closes every client this module created (plugin-server shutdown, test teardown). */
export async function closeAllRedis(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(
    all.map(async (client) => {
      stopRetries.get(client)?.();
      if (!client.isOpen) return;
      if (!client.isReady) {
        client.destroy();
        return;
      }
      // A cluster closes every node's connection; one that is down may never answer QUIT.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), CLOSE_TIMEOUT_MS);
      });
      try {
        if ((await Promise.race([client.close(), late])) === 'late') client.destroy();
      } catch {
        client.destroy();
      } finally {
        clearTimeout(timer);
      }
    }),
  );
}

/** How long `closeAllRedis` waits for a graceful close before it drops the connections. */
const CLOSE_TIMEOUT_MS = 2000;
