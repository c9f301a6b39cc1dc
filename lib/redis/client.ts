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
 * One connection per process per (url, connect timeout), however many command deadlines use
 * it: each deadline gets its own client object (node-redis's `withCommandOptions` view, which
 * shares the connection), and every plugin instance with that deadline shares that object. In
 * the co-hosted chain tenant-cache's 100 ms deadline and the others' 250 ms then ride one
 * connection, so the commands of a phase leave in one write and come back in one read (a
 * cache lookup beside the admission, the log's settles beside the cache's store) instead of one
 * round trip per connection. Nothing blocks a connection here (no BLPOP, no MULTI; the grant
 * listener subscribes on a `duplicate()`), so sharing one holds no command up behind another
 * that Redis would not have run first anyway.
 *
 * Redis Cluster: the same URL fields take `redis://host:port?cluster=1[&nodes=host:port,...]`
 * (see `parseRedisUrl`), and the client is node-redis's cluster client under the same policy:
 * every command goes to the master of its key's slot (a script to the slot of its first key;
 * keys.ts puts all keys of one call in one slot), MOVED and ASK are followed by node-redis,
 * and a master that stops answering fails its commands at once (each node's connection has
 * no offline queue) until its replica has taken over and the topology is read again.
 */
import { createClient } from 'redis';
import { notify } from '../pdk/notices';
import { clusterClient } from './cluster-client';
import {
  MAX_PENDING_COMMANDS,
  NO_PER_COMMAND_TIMER,
  messageOf,
  reconnectDelayMs,
} from './connection-policy';
import { DeadlineSweep } from './deadline-sweep';
import type { RedisClient, RedisClusterClient, RedisStandaloneClient } from './shapes';
import { parseRedisUrl, redactUrl } from './url';

export type {
  RedisClient,
  RedisClusterClient,
  RedisStandaloneClient,
  ScanKeysOptions,
} from './shapes';
export { InvalidRedisUrlError, parseRedisUrl, type RedisTarget } from './url';
export { MAX_PENDING_COMMANDS, reconnectDelayMs } from './connection-policy';
export { CLUSTER_TOPOLOGY_REFRESH_MS, MAX_CLUSTER_REDIRECTIONS } from './cluster-client';

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
  /** Where connection trouble is reported; default `notify` (stderr, and Kong's error log). */
  readonly log?: (message: string) => void;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 250;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
/** Distinct (url, timeouts) combinations one process may hold; more means a config bug. */
export const MAX_CACHED_CLIENTS = 8;

/** The client object per (url, command deadline, connect timeout). */
const clients = new Map<string, RedisClient>();
/** The connection per (url, connect timeout): the first client made on it. */
const connections = new Map<string, RedisClient>();
/** A deadline's view → the connection it shares (for events: a view's own listeners are lost). */
const connectionOf = new WeakMap<RedisClient, RedisClient>();
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

/** True for a client made for a cluster URL. */
export function isRedisCluster(client: RedisClient): client is RedisClusterClient {
  return clusters.has(client);
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

  const connectionKey = `${opts.url}|${connectTimeoutMs}`;
  const shared = connections.get(connectionKey);
  if (shared) {
    // Another deadline on the same connection: a view that shares its socket and queue.
    const view = shared.withCommandOptions(NO_PER_COMMAND_TIMER) as RedisClient;
    if (clusters.has(shared)) clusters.add(view);
    connectionOf.set(view, shared);
    clients.set(cacheKey, view);
    sweeps.set(view, new DeadlineSweep(commandTimeoutMs));
    return view;
  }

  const target = parseRedisUrl(opts.url);
  const log = opts.log ?? notify;
  const where = redactUrl(opts.url);
  let client: RedisClient;
  if (target.kind === 'cluster') {
    const made = clusterClient(target, connectTimeoutMs, log, where);
    client = made.client;
    clusters.add(client);
    stopRetries.set(client, made.stop);
  } else {
    client = standaloneClient(target.url, connectTimeoutMs, log, where);
  }
  clients.set(cacheKey, client);
  connections.set(connectionKey, client);
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
export function waitForRedis(view: RedisClient, timeoutMs: number): Promise<void> {
  if (view.isReady) return Promise.resolve();
  // A deadline's view inherits the connection's listeners, but one added through it would be
  // its own (EventEmitter writes its counts on `this`): listen on the connection.
  const client = connectionOf.get(view) ?? view;
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
  const all = [...connections.values()];
  clients.clear();
  connections.clear();
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
