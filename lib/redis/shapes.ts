/**
 * The shapes of client `createRedis` (client.ts) returns: one server, or a Redis Cluster with
 * the `scanIterator` node-redis's cluster client lacks.
 */
import type { RedisClientType, RedisClusterType } from 'redis';

/** SCAN's options, as node-redis takes them. */
export interface ScanKeysOptions {
  readonly MATCH?: string;
  readonly COUNT?: number;
  readonly TYPE?: string;
}

/** `scanIterator` as both client shapes offer it (node-redis's own binds `this` to its class). */
export interface ScanAllKeys {
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
