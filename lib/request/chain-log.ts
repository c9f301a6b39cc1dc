/**
 * The chain's one log phase. In the co-hosted process (scripts/build.js, dist/chain/) only
 * tenant-auth and token-meter declare a log phase: tenant-ratelimit, tenant-cache and
 * circuit-breaker leave their log work in the request's scope from access
 * (lib/request/for-log.ts `leaveForLog`, `RequestScope.defer`), and tenant-auth's log runs it.
 *
 * Why: for every plugin with a log phase Kong snapshots the request (kong.log.serialize(), a
 * copy of ngx.ctx, both header maps) and starts a timer and an RPC exchange
 * (kong/runloop/plugin_servers/plugin.lua build_phases): four such phases per request became
 * two. token-meter keeps its own: on a cache hit its access never ran, yet its log records the
 * hit. tenant-auth always runs first and is on every route of the chain (the others refuse
 * without its TenantContext), so whatever they left is run.
 *
 * The work runs one after the other on this phase's PDK (one event's calls cannot interleave),
 * in `order`: the seat and lease first (another request may be waiting for them), then the
 * breaker's outcome, then the cache's store. One entry's error is logged and the next runs.
 * A plugin server that restarts between access and log loses the entries, as it loses a scope:
 * seats, leases and reservations then end by their TTL.
 */
import type { KongPdk } from '../pdk/kong';
import { findRequest } from '../tenant/read';
import { CHAIN_LOG_OWNER } from './log-holds';

export async function runChainLog(kong: KongPdk): Promise<void> {
  const req = await findRequest(kong, CHAIN_LOG_OWNER);
  if (!req) return;
  try {
    for (const entry of req.scope.takeDeferred()) {
      try {
        await entry.run(kong);
      } catch (e) {
        const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
        void kong.log.err(`${entry.plugin} log (in the chain's log phase): ${detail}`);
      }
    }
  } finally {
    req.scope.release(CHAIN_LOG_OWNER);
  }
}
