/**
 * What the co-hosted chain process serves of each plugin (scripts/build.js writes
 * dist/chain/<plugin>.js as `chainEntry(require(<plugin>))`): the plugin as it is, except that
 * tenant-auth's access also runs the access work of the plugins Kong would run next on the
 * request (lib/pluginserver/chain-access.ts: one phase where Kong started five), and except for
 * the log phase, which the chain runs once for several plugins (lib/request/chain-log.ts):
 * - tenant-auth, the first plugin of every chain route, gets a log phase that runs the log work
 *   the others left in the request's scope;
 * - tenant-ratelimit, tenant-cache and circuit-breaker declare none: Kong then neither starts a
 *   phase nor snapshots the request for them (kong-pdk lists the phases a plugin's prototype
 *   has as functions, lib/mod.js). Their own `log` stays for one process per plugin.
 * token-meter and retrieval-injector are served as they are (token-meter's log also records
 * cache hits, on which its access never ran); where tenant-auth's access merged token-meter's,
 * Kong is told not to start token-meter's log for that request and tenant-auth's log runs it
 * (`LOG_BY_OWNER`).
 * Kong must read these phases: in the chain layout each plugin's query command dumps
 * dist/chain-query/<plugin>/, which serves the chain's entry (docker/kong-pluginservers.sh).
 */
import { guardPhase } from '../plugin/phase';
import { runChainLog } from '../request/chain-log';
import { declareChainProcess } from '../request/scope-store';
import { CHAIN_LOG_OWNER } from '../request/log-holds';
import type { KongPdk } from '../pdk/kong';
import { findRequest } from '../tenant/read';
import { mergeNext, runMerged, runMergedLog, type Merged } from './chain-access';

/**
 * Plugins whose access work tenant-auth's access runs, when Kong would run them next on the
 * request with nothing foreign between (lib/pluginserver/chain-access.ts).
 */
export const ACCESS_IN_CHAIN: readonly string[] = [
  'tenant-ratelimit',
  'tenant-cache',
  'token-meter',
  'retrieval-injector',
  'circuit-breaker',
];

/**
 * Merged plugins whose log phase Kong is told not to start for the request (hidden with their
 * access): tenant-auth's log runs theirs, on its own event, after its own log work. token-meter
 * keeps a log phase of its own in the chain build (a cache hit, which exits before its access,
 * still settles there), so without this Kong started a second log phase on every request.
 */
export const LOG_BY_OWNER: readonly string[] = ['token-meter'];

/** Plugins whose log work the chain's log phase runs; no log phase of their own in the chain. */
export const LOG_IN_CHAIN: ReadonlySet<string> = new Set([
  'tenant-ratelimit',
  'tenant-cache',
  'circuit-breaker',
]);

type PluginClass = abstract new (config: never) => object;

interface PluginModule {
  readonly Name: string;
  readonly Plugin: PluginClass;
}

export function chainEntry<M extends PluginModule>(mod: M): M {
  declareChainProcess();
  if (mod.Name === CHAIN_LOG_OWNER) {
    const Plugin = mod.Plugin as unknown as new (config: unknown) => object;
    const ownAccess = (Plugin.prototype as { access?: (kong: unknown) => Promise<void> }).access;
    class ChainLogOwner extends Plugin {
      async access(kong: unknown): Promise<void> {
        const merged = await mergeNext(kong, CHAIN_LOG_OWNER, ACCESS_IN_CHAIN, LOG_BY_OWNER);
        await ownAccess?.call(this, kong);
        if (merged.length === 0) return;
        await runLogsHere(kong, merged);
        // A merged plugin's error is its own refusal (the kit's guard); anything past that
        // (none expected) refuses the request rather than let it go on without them.
        await guardPhase(kong, CHAIN_LOG_OWNER, 'access', () => runMerged(kong, merged));
      }

      async log(kong: unknown): Promise<void> {
        await guardPhase(kong, CHAIN_LOG_OWNER, 'log', runChainLog, { afterResponse: true });
      }
    }
    return { ...mod, Plugin: ChainLogOwner };
  }
  if (LOG_IN_CHAIN.has(mod.Name)) {
    const Plugin = mod.Plugin as unknown as new (config: unknown) => object;
    class LogInChain extends Plugin {}
    // Shadows the inherited method: kong-pdk then lists no log phase for the plugin.
    Object.defineProperty(LogInChain.prototype, 'log', { value: undefined });
    return { ...mod, Plugin: LogInChain };
  }
  return mod;
}

/**
 * The merged plugins whose log Kong will not start for this request: left in the request's
 * scope for the chain's log phase, after the seat and the breaker's outcome (order 0 and 1) and
 * before the cache's store (2): the bill before what only saves work. Without a scope
 * (tenant-auth refused the request before it published one) there is nothing for them to
 * record: their log finds no tenant either.
 */
async function runLogsHere(kong: unknown, merged: readonly Merged[]): Promise<void> {
  const here = merged.filter((m) => m.logHere);
  if (here.length === 0) return;
  let req;
  try {
    req = await findRequest(kong as KongPdk, CHAIN_LOG_OWNER);
  } catch {
    return;
  }
  if (!req) return;
  for (const m of here) {
    req.scope.defer({ plugin: m.name, order: 1.5, run: (k) => runMergedLog(k, m) });
  }
}
