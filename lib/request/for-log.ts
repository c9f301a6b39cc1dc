/**
 * A record a plugin's access phase leaves for its own log phase.
 *
 * Where the request has a findable scope (tenant-auth named it in the carrier), the record
 * stays in this process's scope: no PDK call in access, and log finds it with the carrier
 * read it makes anyway. Otherwise (a carrier without a key) it goes through
 * `kong.ctx.shared` as before. A plugin server that restarts between the two phases loses
 * a scope record: what it held (a seat, a lease) then ends by its own TTL in Redis, as with a
 * lost log timer.
 */
import type { KongPdk } from '../pdk/kong';
import { TENANT_CONTEXT_KEY, carrierRequestKey } from '../tenant/context';
import { findScope, type RequestScope, type ScopeSlot } from './scope';
import { isChainProcess } from './scope-store';

export interface LogRecordSpec<T> {
  /** The plugin whose log phase reads the record (it holds the scope until then). */
  readonly plugin: string;
  /** Where its work goes in the chain's one log phase (DeferredLog.order; default 1). */
  readonly order?: number;
  readonly slot: ScopeSlot<T>;
  /** The `kong.ctx.shared` key used when the scope cannot be found again. */
  readonly sharedKey: string;
  encode(value: T): string;
  /** undefined for anything that is not a record of this kind. */
  decode(raw: unknown): T | undefined;
}

/**
 * Leaves `value` for `spec.plugin`'s log phase (0 PDK calls with a findable scope, else 1).
 * In the co-hosted chain process, `run` (the log work for the record) is also left for the
 * chain's one log phase (tenant-auth's, lib/request/chain-log.ts): the chain's build declares no
 * log phase for this plugin there, so Kong neither starts a phase nor snapshots the request for
 * it. Whichever log phase takes the record first does the work, once.
 */
export async function leaveForLog<T>(
  kong: KongPdk,
  scope: RequestScope,
  spec: LogRecordSpec<T>,
  value: T,
  run?: (kong: KongPdk, record: T, scope: RequestScope) => Promise<void>,
): Promise<void> {
  if (scope.findable) {
    const deferred = scope.get(spec.slot) !== undefined;
    scope.set(spec.slot, value);
    scope.hold(spec.plugin);
    if (run && isChainProcess() && !deferred) {
      scope.defer({
        plugin: spec.plugin,
        order: spec.order ?? 1,
        run: async (k) => {
          const record = scope.get(spec.slot);
          scope.set(spec.slot, undefined);
          try {
            if (record !== undefined) await run(k, record, scope);
          } finally {
            scope.release(spec.plugin);
          }
        },
      });
    }
    return;
  }
  await kong.ctx.shared.set(spec.sharedKey, spec.encode(value));
}

/**
 * In log: the record access left, and the request's scope when this process has it (released
 * by `done`). One PDK call (the carrier) when the scope is here, two otherwise (a carrier
 * without a key, or a plugin server restarted since access: the ctx.shared copy, if any).
 */
export async function takeForLog<T>(
  kong: KongPdk,
  spec: LogRecordSpec<T>,
): Promise<{ record: T | undefined; scope: RequestScope | undefined; done(): void }> {
  const carrier = await kong.ctx.shared.get(TENANT_CONTEXT_KEY);
  const key = carrierRequestKey(carrier);
  const found = key === null ? undefined : findScope(key);
  // Only the scope bound to this very carrier is this request's.
  const scope = found && found.boundTo(carrier as string) ? found : undefined;
  const done = () => scope?.release(spec.plugin);
  // A scope found here is the one this plugin's access used (same plugin, same process):
  // without a record in it, access left none (a refusal before it).
  if (scope) {
    // Taken: the chain's log phase (if it runs too) finds nothing left to do.
    const record = scope.get(spec.slot);
    scope.set(spec.slot, undefined);
    scope.takeDeferredOf(spec.plugin);
    return { record, scope, done };
  }
  return { record: spec.decode(await kong.ctx.shared.get(spec.sharedKey)), scope, done };
}
