/**
 * The Redis client every plugin uses: node-redis 6, configured to fail fast.
 *
 * A plugin runs inside a request. If Redis is slow or down, the plugin must find out within a
 * few hundred milliseconds and apply its own failure policy (fail open to a local limiter,
 * refuse, reserve locally) — not hold the request for node-redis's 5 s default or queue
 * commands until a reconnect that may never come. Hence:
 * - a short per-command deadline (250 ms by default). node-redis 6's own `timeout` command
 *   option only bounds the wait BEFORE a command is written to the socket (its timer is
 *   removed once written; read @redis/client commands-queue.js), so a Redis that accepts a
 *   command and answers late is not covered by it. `withDeadline` adds the missing half:
 *   lib code (`runScript`) races every call against the same deadline,
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
 */
import { createClient, type RedisClientType } from 'redis';

export type RedisClient = RedisClientType;

export interface RedisOptions {
  /** `redis://[[user][:password]@]host[:port][/db]` */
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

const RECONNECT_BASE_MS = 50;
const RECONNECT_CAP_MS = 2000;
const RECONNECT_JITTER_MS = 100;

const clients = new Map<string, RedisClient>();
const deadlines = new WeakMap<RedisClient, number>();

/** Thrown by `withDeadline` when Redis has not answered in time. */
export class RedisDeadlineError extends Error {
  override readonly name = 'RedisDeadlineError';
  constructor(readonly deadlineMs: number) {
    super(`Redis did not answer within ${deadlineMs} ms`);
  }
}

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

  const log = opts.log ?? ((m: string) => console.error(m));
  const where = redactUrl(opts.url);
  const client: RedisClient = createClient({
    url: opts.url,
    RESP: 3,
    disableOfflineQueue: true,
    commandsQueueMaxLength: MAX_PENDING_COMMANDS,
    commandOptions: { timeout: commandTimeoutMs },
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
    const message = err instanceof Error ? err.message : String(err);
    log(`[redis] ${where} unavailable, retrying in the background: ${message}`);
  });
  client.on('ready', () => {
    if (outage) log(`[redis] ${where} reconnected`);
    outage = false;
  });

  clients.set(cacheKey, client);
  deadlines.set(client, commandTimeoutMs);
  client.connect().catch((err: unknown) => {
    // Only reached when the client is closed before it ever connected.
    const message = err instanceof Error ? err.message : String(err);
    log(`[redis] ${where} connect abandoned: ${message}`);
  });
  return client;
}

/**
 * Settles like `command`, or rejects with `RedisDeadlineError` once the client's command
 * timeout has passed. The command itself stays in flight; its late reply is dropped.
 */
export function withDeadline<T>(client: RedisClient, command: Promise<T>): Promise<T> {
  const ms = deadlines.get(client) ?? DEFAULT_COMMAND_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisDeadlineError(ms)), ms);
  });
  return Promise.race([command, deadline]).finally(() => clearTimeout(timer));
}

/** Resolves once the client is connected; rejects with a clear message after `timeoutMs`. */
export function waitForRedis(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.isReady) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`Redis not reachable within ${timeoutMs} ms`));
    }, timeoutMs);
    client.once('ready', onReady);
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
      if (!client.isOpen) return;
      if (!client.isReady) {
        client.destroy();
        return;
      }
      try {
        await client.close();
      } catch {
        client.destroy();
      }
    }),
  );
}
