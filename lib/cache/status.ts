/**
 * The contract between `tenant-cache` and the plugins after it (`token-meter` records a hit in
 * its ledger with 0 upstream tokens): `tenant-cache` sets `kong.ctx.shared[CACHE_STATUS_KEY]`
 * to one of these strings in `access`, before it exits on a hit. `log` phases still run after
 * `kong.response.exit`, so a later plugin's `log` reads it there.
 *
 * - `hit`: answered from the cache; the upstream was not called.
 * - `miss`: looked up, not found (or Redis unavailable); the request went upstream.
 * - `bypass`: not looked up (not cacheable, client `Cache-Control`, cache disabled for the
 *   plan, misconfigured cache); the request went upstream.
 */
import { slot } from '../request/scope';
import { SHARED_KEYS } from '../request/shared-keys';

export const CACHE_STATUS_KEY = SHARED_KEYS.cacheStatus.key;

/** The same status in the request's scope (lib/request/scope.ts): read at no call in-process. */
export const CACHE_STATUS_SLOT = slot<CacheStatus>(CACHE_STATUS_KEY);

export type CacheStatus = 'hit' | 'miss' | 'bypass';

/** Reads the status another plugin wrote; undefined when absent or not one of the three. */
export function decodeCacheStatus(raw: unknown): CacheStatus | undefined {
  return raw === 'hit' || raw === 'miss' || raw === 'bypass' ? raw : undefined;
}
