/**
 * The Redis URL every plugin's `redis.url` takes: one server, or a Redis Cluster
 * (`?cluster=1[&nodes=host:port,...]`), and its password kept out of log lines.
 */

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

/** The URL without its password, fit for a log line. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable redis url>';
  }
}
