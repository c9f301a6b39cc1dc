/**
 * tenant-cache's start-up: the config read and checked once, and what every request uses built
 * from it (the key namespace, the per-tenant keyring from the master secret, the Redis client),
 * or the reason it cannot cache. Never throws past the config read: an unusable config, or no
 * master secret, makes every request bypass the cache (the traffic flows, uncached) instead of
 * Kong failing StartInstance. To the plugin kit (index.ts) both are a start-up that succeeded:
 * a cache that cannot cache still serves, so the kit's `plugin_misconfigured` refusal is not
 * for it; it serves metrics only when it can cache.
 */
import { createRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { readConfig } from '../../lib/schema/config';
import { CacheKeyring, loadMasterSecret } from './crypto';
import { PLUGIN_NAME } from './pending';
import { Schema, checkConfig, type TenantCacheConfig } from './schema';
import { notify } from '../../lib/pdk/notices';

export interface Ready {
  readonly config: TenantCacheConfig;
  readonly keyspace: Keyspace;
  readonly keyring: CacheKeyring;
  readonly redis: RedisClient;
}

/** Either way the config is there: a misconfigured instance still labels and answers. */
export type StartUp =
  | { readonly ok: true; readonly config: TenantCacheConfig; readonly ready: Ready }
  | { readonly ok: false; readonly config: TenantCacheConfig; readonly reason: string };

export function startUp(raw: unknown): StartUp {
  let config: TenantCacheConfig;
  try {
    config = readConfig(Schema, raw);
  } catch (e) {
    // A config readConfig refuses (a deprecated field and its replacement set to different
    // values): bypass as below, labelled with the defaults, never a throw out of the
    // constructor (Kong would run the route without the plugin and log nothing we chose).
    return disabled(readConfig(Schema, {}), e);
  }
  try {
    checkConfig(config);
    const keyspace = createKeyspace(config.redis.key_namespace);
    const { secret } = loadMasterSecret({
      env: config.master_key_env,
      file: config.master_key_file,
      ephemeral: config.ephemeral_key_when_missing,
    });
    const keyring = new CacheKeyring(secret);
    const redis = createRedis({
      url: config.redis.url,
      commandTimeoutMs: config.redis.timeout_ms,
    });
    return { ok: true, config, ready: { config, keyspace, keyring, redis } };
  } catch (e) {
    return disabled(config, e);
  }
}

function disabled(config: TenantCacheConfig, e: unknown): StartUp {
  const reason = e instanceof Error ? e.message : String(e);
  notify(`${PLUGIN_NAME}: caching disabled: ${reason}`);
  return { ok: false, config, reason };
}
