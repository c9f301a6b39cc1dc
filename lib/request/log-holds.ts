/**
 * Who still needs a request's scope for a log phase, and the log work plugins left for the
 * chain's one log phase (tenant-auth's, in the co-hosted process: lib/request/chain-log.ts).
 */
import type { KongPdk } from '../pdk/kong';

/** Log work a plugin leaves for the chain's one log phase. */
export interface DeferredLog {
  readonly plugin: string;
  /** Lower first: what frees a shared resource (a seat) before what only records. */
  readonly order: number;
  run(kong: KongPdk): Promise<void>;
}

/** The plugin whose log phase runs the chain's deferred log work (scripts/build.js). */
export const CHAIN_LOG_OWNER = 'tenant-auth';

export class LogHolds {
  /** Plugins whose log phase still needs the scope. */
  private readonly holders = new Set<string>();
  private readonly deferred: DeferredLog[] = [];

  hold(plugin: string): void {
    this.holders.add(plugin);
  }

  /**
   * Leaves `entry.run` for the chain's log phase instead of `entry.plugin`'s own; the scope is
   * held until it ran (or TTL). `order` sorts the work there.
   */
  defer(entry: DeferredLog): void {
    this.deferred.push(entry);
    this.hold(CHAIN_LOG_OWNER);
  }

  /** The work left for the chain's log phase, in its order; each entry is taken once. */
  takeDeferred(): DeferredLog[] {
    return this.deferred.splice(0).sort((a, b) => a.order - b.order);
  }

  /** `plugin`'s own deferred work, taken (its own log phase ran after all). */
  takeDeferredOf(plugin: string): DeferredLog | undefined {
    const i = this.deferred.findIndex((d) => d.plugin === plugin);
    return i < 0 ? undefined : this.deferred.splice(i, 1)[0];
  }

  /** `plugin` is done; true when it was the last holder. */
  release(plugin: string): boolean {
    this.holders.delete(plugin);
    return this.holders.size === 0;
  }

  get held(): boolean {
    return this.holders.size > 0;
  }
}
