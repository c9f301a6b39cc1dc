/**
 * Where a process keeps its request scopes (scope.ts), and what bounds them: found by key,
 * ended by their last holder or by the sweep (past their TTL, or unheld and idle), at most
 * MAX_SCOPES at once (the oldest goes first) and MAX_SCOPE_BODY_BYTES of bodies (the oldest
 * scopes' bodies go first; a scope whose body was dropped reads it again).
 */

/** Longer than any wait a request may do in access (kept under Kong's 60 s socket timeout). */
export const SCOPE_TTL_MS = 120_000;
/** A scope no plugin holds for its log phase ends this long after it was last touched. */
export const SCOPE_IDLE_MS = 10_000;
/** Scopes held at once per process; the oldest is dropped past it. */
export const MAX_SCOPES = 20_000;
/** Body bytes held at once per process; the oldest scopes' bodies are dropped past it. */
export const MAX_SCOPE_BODY_BYTES = 64 * 1024 * 1024;

/** What the store needs of a scope. */
export interface StoredScope {
  readonly key: string;
  readonly bornAt: number;
  /** The bytes held for the body. */
  readonly bodySize: number;
  expired(now: number): boolean;
  dropBody(): void;
}

export class ScopeStore<S extends StoredScope> {
  private readonly scopes = new Map<string, S>();
  private bodyBytes = 0;
  private lastSweep = 0;

  get(key: string): S | undefined {
    return this.scopes.get(key);
  }

  add(scope: S): void {
    this.scopes.set(scope.key, scope);
  }

  /** Whether `scope` is the one this store holds under its key. */
  holds(scope: S): boolean {
    return this.scopes.get(scope.key) === scope;
  }

  /** A held scope's body grew (or shrank) by `delta` bytes. */
  bodyChanged(delta: number): void {
    this.bodyBytes += delta;
  }

  end(scope: S): void {
    scope.dropBody();
    if (this.holds(scope)) this.scopes.delete(scope.key);
  }

  /**
   * Ends expired scopes (at most every 250 ms) and, past MAX_SCOPES, the oldest. Map order is
   * creation order: the walk stops at the first scope too young to be idle.
   */
  sweep(now = Date.now()): void {
    if (now - this.lastSweep < 250 && this.scopes.size <= MAX_SCOPES) return;
    this.lastSweep = now;
    for (const scope of this.scopes.values()) {
      if (this.scopes.size > MAX_SCOPES || scope.expired(now)) this.end(scope);
      else if (now - scope.bornAt <= SCOPE_IDLE_MS) break;
    }
  }

  /** Past MAX_SCOPE_BODY_BYTES, drops the oldest scopes' bodies (never `keep`'s). */
  trimBodies(keep: S): void {
    if (this.bodyBytes <= MAX_SCOPE_BODY_BYTES) return;
    for (const scope of this.scopes.values()) {
      if (this.bodyBytes <= MAX_SCOPE_BODY_BYTES) return;
      if (scope !== keep) scope.dropBody();
    }
  }

  /** How many scopes and body bytes are held, after a sweep at `now`. */
  stats(now: number): { scopes: number; bodyBytes: number } {
    this.lastSweep = 0;
    this.sweep(now);
    return { scopes: this.scopes.size, bodyBytes: this.bodyBytes };
  }
}

let chain = false;

/**
 * Declared by the co-hosted server's entry files (scripts/build.js): every plugin of the chain
 * that Kong runs on this node runs in this process, so a fact one plugin learns reaches the
 * others through the scope and need not also be published in `kong.ctx.shared`.
 */
export function declareChainProcess(): void {
  chain = true;
}

export function isChainProcess(): boolean {
  return chain;
}
