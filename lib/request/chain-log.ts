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
 * The work runs side by side, started in `order`: the seat and lease first (another request may
 * be waiting for them), then the breaker's outcome, the bill, the cache's store. Their PDK reads
 * are the phase's batch, fetched with its first read (batch.ts), and a call that must go to
 * Kong waits for the one before it (fast-pdk.ts `pipeCall`); their Redis commands then leave
 * together and the process wakes once for their answers, not once per plugin. One entry's
 * error is logged; the others are not held up by it.
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
    await Promise.all(
      req.scope.takeDeferred().map(async (entry) => {
        try {
          await entry.run(kong);
        } catch (e) {
          const detail = e instanceof Error ? (e.stack ?? e.message) : String(e);
          void kong.log.err(`${entry.plugin} log (in the chain's log phase): ${detail}`);
        }
      }),
    );
  } finally {
    req.scope.release(CHAIN_LOG_OWNER);
  }
}
