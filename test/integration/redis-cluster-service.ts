/**
 * The real Redis Cluster of the scale-out tests, run by scripts/services/redis-cluster.sh:
 * the shared one (REDIS_CLUSTER_URL, or started here when it is not running, never skipped),
 * or a private one on free ports for a test that kills nodes and moves slots.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createClient, type RedisClientType } from 'redis';
import {
  createRedis,
  waitForRedis,
  type RedisClient,
  type RedisClusterClient,
  isRedisCluster,
} from '../../lib/redis/client';
import { hashSlot } from '../../lib/redis/hash-slot';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';

const REPO = path.join(__dirname, '..', '..');
const SCRIPT = path.join(REPO, 'scripts', 'services', 'redis-cluster.sh');
/** A fresh cluster takes a few seconds (replicas sync); a loaded machine, more. */
const SCRIPT_TIMEOUT_MS = 120_000;

/** Runs the service script; resolves with its stdout, rejects with its stderr. */
export function clusterScript(command: 'start' | 'stop' | 'status', firstPort?: number) {
  return new Promise<string>((resolve, reject) => {
    execFile(
      'bash',
      [SCRIPT, command],
      {
        timeout: SCRIPT_TIMEOUT_MS,
        env: {
          ...process.env,
          ...(firstPort === undefined ? {} : { REDIS_CLUSTER_PORT: String(firstPort) }),
        },
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`redis-cluster.sh ${command} failed: ${stderr.trim() || err}`));
        else resolve(stdout);
      },
    );
  });
}

function urlFrom(stdout: string): string {
  const m = /^export REDIS_CLUSTER_URL='([^']+)'$/m.exec(stdout);
  if (!m?.[1]) throw new Error(`redis-cluster.sh printed no REDIS_CLUSTER_URL: ${stdout}`);
  return m[1];
}

/** REDIS_CLUSTER_URL, or the project's cluster, started by its script when it is not up. */
export async function sharedClusterUrl(): Promise<string> {
  const fromEnv = process.env.REDIS_CLUSTER_URL;
  if (fromEnv) return fromEnv;
  try {
    return urlFrom(await clusterScript('status'));
  } catch {
    return urlFrom(await clusterScript('start'));
  }
}

export interface PrivateCluster {
  readonly url: string;
  readonly firstPort: number;
  readonly ports: readonly number[];
  /** The pid of the node on `port` (from its pidfile). */
  pid(port: number): number;
  /** Stops the six nodes and removes their state. */
  stop(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (free: boolean): void => {
      socket.destroy();
      resolve(free);
    };
    socket.setTimeout(300, () => done(false));
    socket.once('error', () => done(true));
    socket.connect(port, '127.0.0.1', () => done(false));
  });
}

/**
 * Six free ports in a row whose bus ports (+10000) are free too, all below Linux's ephemeral
 * range (32768–60999): an outgoing connection of any other test can take an ephemeral port
 * between this check and redis-server's bind (CI saw a bus port taken so).
 */
async function freePortRun(): Promise<number> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const first = 20_000 + 10 * Math.floor(Math.random() * 275);
    const ports = Array.from({ length: 6 }, (_, i) => first + i);
    const free = await Promise.all(ports.flatMap((p) => [portFree(p), portFree(p + 10_000)]));
    if (free.every(Boolean)) return first;
  }
  throw new Error('no run of six free ports (and bus ports) found between 20000 and 32760');
}

/**
 * A cluster of its own for one test file on free ports; the caller stops it (`stop`, from
 * `test.after.always`: a teardown registered in a `before` hook would run at the hook's end).
 */
export async function startPrivateCluster(): Promise<PrivateCluster> {
  let firstPort = 0;
  let url = '';
  // A port taken between the check and the bind: another run of ports, at most three times.
  for (let attempt = 1; ; attempt++) {
    firstPort = await freePortRun();
    try {
      url = urlFrom(await clusterScript('start', firstPort));
      break;
    } catch (e) {
      await clusterScript('stop', firstPort).catch(() => undefined);
      if (attempt >= 3 || !/Address already in use/.test(String(e))) throw e;
    }
  }
  const stop = async (): Promise<void> => {
    await clusterScript('stop', firstPort);
  };
  const dir = path.join(REPO, '.run', 'redis-cluster', String(firstPort));
  return {
    url,
    firstPort,
    ports: Array.from({ length: 6 }, (_, i) => firstPort + i),
    pid: (port) => Number(readFileSync(path.join(dir, `node-${port}`, 'redis.pid'), 'utf8')),
    stop,
  };
}

/** The project's client for a cluster URL, connected. */
export async function connectCluster(
  url: string,
  commandTimeoutMs: number,
  log?: (message: string) => void,
): Promise<RedisClusterClient> {
  const client: RedisClient = createRedis({ url, commandTimeoutMs, ...(log ? { log } : {}) });
  if (!isRedisCluster(client)) throw new Error(`${url} did not make a cluster client`);
  try {
    await waitForRedis(client, 10_000);
  } catch {
    throw new Error(
      `Redis Cluster not reachable at ${url} (REDIS_CLUSTER_URL): ` +
        'start it with `scripts/services/redis-cluster.sh start` (after `install`)',
    );
  }
  return client;
}

/** A plain connection to one node, for CLUSTER and admin commands. */
export async function nodeAdmin(t: ExecutionContext, port: number): Promise<RedisClientType> {
  const admin: RedisClientType = createClient({ socket: { host: '127.0.0.1', port } });
  admin.on('error', () => undefined);
  await admin.connect();
  t.teardown(() => admin.destroy());
  return admin;
}

/** The port of the master serving `slot`, as the client sees the topology. */
export function masterPortOf(cluster: RedisClusterClient, slot: number): number {
  const port = cluster.slots[slot]?.master.port;
  if (port === undefined) throw new Error(`no master for slot ${slot}`);
  return port;
}

/**
 * One tenant per master (as many as there are masters), named `<prefix>-<n>`: tenants whose
 * keys live on different machines.
 */
export function tenantsOnEveryMaster(cluster: RedisClusterClient, prefix: string): TenantId[] {
  const byMaster = new Map<number, TenantId>();
  const masters = new Set(cluster.masters.map((m) => m.port));
  for (let n = 0; byMaster.size < masters.size && n < 10_000; n++) {
    const tenant = parseTenantId(`${prefix}-${n}`);
    const port = masterPortOf(cluster, hashSlot(`t:${tenant}`));
    if (!byMaster.has(port)) byMaster.set(port, tenant);
  }
  return [...byMaster.values()];
}
