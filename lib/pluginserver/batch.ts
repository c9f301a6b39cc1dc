/**
 * Fewer PDK exchanges in access: the reads a phase makes are fetched in one exchange, and its
 * writes are sent together, through `kong.ctx.shared.kta_pdk.run` (lib/pluginserver/pdk-batch.lua,
 * which kong.yml's pre-function installs on the route).
 *
 * Why: every PDK call is one round trip with Kong (≈ 50 µs of CPU on the two sides,
 * kong-facts.md); unbatched, tenant-auth alone made 8 on every request and tenant-cache 7. The plugins' code
 * is unchanged — this wraps the event's `call`:
 * - **Reads, learnt.** The reads a plugin's phase made before its first write in earlier
 *   requests (same method, same arguments: `kong.request.get_headers(100)`,
 *   `kong.ctx.shared.get(TENANT_CONTEXT_KEY)`, …) are fetched all at once at the phase's first call.
 *   Until the phase writes anything, a read with the same signature is answered from that
 *   fetch: nothing in nginx can change it meanwhile (the request waits on this phase). A read
 *   never seen before, or made after a write, goes to Kong as before.
 * - **Writes, deferred.** Calls that only change the request (service request headers and body,
 *   response headers, `ctx.shared.set`, the serializer, the target, log lines) are queued and
 *   sent in one exchange: before the next read that goes to Kong (in the same exchange as that
 *   read), with `kong.response.exit`, or when the phase ends. Kong runs them in the order they
 *   were made, so what the next read, the next plugin and the upstream see is what they saw
 *   before. A write Kong refuses raises its error at that exchange instead of at the call; the
 *   phase then fails as before (guardPhase: a 500 refusal, never proxied).
 *   A `kong.ctx.shared` value set again before the writes leave is sent once (its last value);
 *   one given to `sharedAtEnd` is computed as the phase's writes leave for the last time (its
 *   exit or its end): the chain's span times, which change with every merged plugin.
 * - **Without the snippet** (a route that lacks it, the harness without its pre-function) Kong
 *   finds no `kta_pdk.run` and answers nil without running anything: the same calls are then
 *   made one by one, and the route is tried again after `ABSENT_RETRY_MS`. An exit is batched
 *   only after a batch of the same phase came back (the snippet is there): an exit Kong never ran
 *   would let the request through.
 * In log (Kong runs it in a timer on a saved copy of the request, plugin.lua build_phases), only
 * calls that read the same there through the snippet are batched: `ctx.shared` (the request's own
 * table, which the timer keeps), the service response (`kong.service.response.*`, read from the
 * request context the timer restores), and the response's status, headers and source, which
 * Kong answers from its saved copy (exposed_api) and kong.yml's pre-function log snippet saves
 * the same (lib/pluginserver/pdk-log-facts.lua; without it they go alone). The request headers
 * and the serializer still go alone.
 */

import {
  ACCESS_READ,
  BATCH_METHOD,
  CHAIN_METHOD,
  EXITS,
  LOG_WRITES,
  READS,
  WRITES,
  decodeResult,
  isFailure,
  isStableRead,
} from './batch-methods';
import { phaseMemory, resetPhaseMemory, signature, type PhaseMemory } from './batch-memory';

export { BATCH_METHOD, endsWithExit } from './batch-methods';

type Call = (method: string, ...args: unknown[]) => Promise<unknown>;

/** A route without the snippet is tried again this long after (a plugin added to it later). */
export const ABSENT_RETRY_MS = 60_000;
/** Per plugin instance (one per route or scope in Kong): when the snippet was found missing. */
const absentSince = new Map<string, number>();
/**
 * Plugin instances whose route has shown the snippet (a batch came back). Only a phase's first
 * read probes for it: writes alone are batched once it is known there, so a route without the
 * snippet pays one wasted exchange per instance and ABSENT_RETRY_MS, on a read.
 */
const presentAt = new Set<string>();

/** How many exchanges the batches saved and cost (metrics, tests). */
export const batchStats = { batches: 0, callsInBatches: 0, fallbacks: 0 };

type Queued = readonly [method: string, args: unknown[]];

/**
 * The event's `call`, batched. `instance` names the plugin instance (the snippet is per route),
 * `phaseKey` the code that runs (plugin and phase: what is learnt).
 */
export class PhaseBatch {
  private fetched: Map<string, unknown> | undefined;
  private pending: Queued[] = [];
  private wrote = false;
  private confirmed = false;
  private exited_ = false;
  private exiting: Promise<undefined> | undefined;
  private readonly mem: PhaseMemory;

  private readonly read: RegExp;
  private readonly writes: ReadonlySet<string>;

  constructor(
    private readonly call: Call,
    private readonly instance: string,
    phaseKey: string,
    private readonly now: () => number = Date.now,
    phase = 'access',
  ) {
    this.read = READS[phase] ?? ACCESS_READ;
    this.writes = phase === 'log' ? LOG_WRITES : WRITES;
    this.mem = phaseMemory(phaseKey);
    this.mem.events++;
  }

  private available(): boolean {
    const since = absentSince.get(this.instance);
    if (since === undefined) return true;
    if (this.now() - since >= ABSENT_RETRY_MS) {
      absentSince.delete(this.instance);
      return true;
    }
    return false;
  }

  /** Runs `calls` in one exchange; undefined when the snippet is not on the route. */
  private async runBatch(
    calls: Queued[],
    aheadFrom = calls.length,
  ): Promise<unknown[] | undefined> {
    const wire = calls.map(([m, a], i) =>
      i >= aheadFrom ? [m, a, a.length, true] : [m, a, a.length],
    );
    const out = await this.call(BATCH_METHOD, wire);
    if (!Array.isArray(out) || out.length !== calls.length) {
      absentSince.set(this.instance, this.now());
      presentAt.delete(this.instance);
      batchStats.fallbacks++;
      return undefined;
    }
    this.confirmed = true;
    presentAt.add(this.instance);
    batchStats.batches++;
    batchStats.callsInBatches += calls.length;
    return out;
  }

  /** Sends `calls` in order, batched when possible; returns the last call's result. */
  private async send(calls: Queued[]): Promise<unknown> {
    if (calls.length === 1 || !this.available() || !presentAt.has(this.instance)) {
      let last: unknown = null;
      for (const [m, a] of calls) last = await this.call(m, ...a);
      return last;
    }
    const out = await this.runBatch(calls);
    if (out === undefined) {
      // Nothing ran: the same calls, one by one.
      let last: unknown = null;
      for (const [m, a] of calls) last = await this.call(m, ...a);
      return last;
    }
    const [lastMethod, lastArgs] = calls[calls.length - 1] as Queued;
    const last = out[out.length - 1];
    // A saved log value the snippet lacks (no log-facts snippet): Kong's own answer, alone.
    if (isFailure(last)) return this.call(lastMethod, ...lastArgs);
    return decodeResult(lastMethod, last);
  }

  /** An exit was sent (or is on its way): Kong runs nothing more of this phase. */
  get exited(): boolean {
    return this.exiting !== undefined || this.exited_;
  }

  /**
   * `kong.ctx.shared` values this phase set, sent or not: what Kong would answer for them (the
   * table is the request's own, and nothing else runs in this phase meanwhile). Only
   * primitives: a table would come back from Kong as a copy.
   */
  private readonly sharedSet = new Map<unknown, unknown>();

  /** kong.ctx.shared values computed when the phase's writes leave for the last time. */
  private atEnd: Map<string, () => string> | undefined;

  /**
   * Writes `key` in kong.ctx.shared once, with the phase's last writes (its exit or its end),
   * as `value()` then returns it: a value that keeps changing during the phase (the chain's
   * span times) costs one write, not one per change.
   */
  readonly sharedAtEnd = (key: string, value: () => string): void => {
    (this.atEnd ??= new Map()).set(key, value);
  };

  private queueAtEnd(): void {
    const values = this.atEnd;
    if (!values) return;
    this.atEnd = undefined;
    for (const [key, value] of values) void this.handle('kong.ctx.shared.set', key, value());
  }

  private noteShared(args: unknown[]): void {
    const v = args[1];
    if (v === null || v === undefined || ['string', 'number', 'boolean'].includes(typeof v))
      this.sharedSet.set(args[0], v ?? null);
    else this.sharedSet.delete(args[0]);
  }

  readonly handle: Call = async (method, ...args) => {
    // Nothing after an exit reaches Kong (it never steps the event again).
    if (this.exiting) return undefined;
    if (method === CHAIN_METHOD) return this.chain(args);
    if (method === 'kong.ctx.shared.get' && this.sharedSet.has(args[0]))
      return this.sharedSet.get(args[0]);
    if (EXITS.has(method)) {
      this.queueAtEnd();
      // Plugins `void` their exit: the phase's end waits for it (it may first send writes).
      this.exiting ??= this.exit(method, args);
      return this.exiting;
    }
    if (this.writes.has(method)) {
      this.wrote = true;
      if (method === 'kong.ctx.shared.set') {
        this.noteShared(args);
        // A value set again before the writes leave: only the last one is sent (no read came
        // between, so nothing could have seen the first; ctx.shared.set has no other effect).
        const i = this.pending.findIndex(([m, a]) => m === method && a[0] === args[0]);
        if (i >= 0) this.pending.splice(i, 1);
      }
      this.pending.push([method, args]);
      return null;
    }
    const read = this.read.test(method);
    const sig = signature(method, args);
    if (read && (!this.wrote || isStableRead(method, args))) {
      this.mem.remember(sig, method, args);
      if (this.fetched === undefined) return this.prefetch(sig, method, args);
      if (this.fetched.has(sig)) return this.fetched.get(sig);
    }
    const calls: Queued[] = [...this.pending, [method, args]];
    this.pending = [];
    return this.send(calls);
  };

  /**
   * Runs `first` with every learnt read but `except` in one batch, and keeps what the reads
   * answered for the phase's later reads (marked as fetched ahead: Kong returns their errors
   * instead of raising them). Undefined when the snippet is not on the route.
   */
  private async withLearnt(first: Queued, except?: string): Promise<unknown[] | undefined> {
    const learnt = this.mem.learnt(except);
    this.fetched = new Map();
    const calls: Queued[] = [first, ...learnt.map(([, l]) => [l.method, l.args] as const)];
    const out = await this.runBatch(calls, 1);
    if (out === undefined) return undefined;
    learnt.forEach(([s, l], i) => {
      const item = out[i + 1];
      if (!isFailure(item)) this.fetched?.set(s, decodeResult(l.method, item));
    });
    return out;
  }

  /**
   * The chain's merge (chain-access.ts): only as the phase's first call, only where the snippet
   * is known to be on the route, and always inside a batch (with the reads learnt), so that it
   * costs no exchange of its own and is never sent to a Kong that lacks it. Never learnt: it
   * changes what Kong runs next, so it is made only when the owner will run what it merges.
   */
  private async chain(args: unknown[]): Promise<unknown> {
    if (this.fetched !== undefined || this.wrote || !presentAt.has(this.instance)) return null;
    if (!this.available()) return null;
    const out = await this.withLearnt([CHAIN_METHOD, args]);
    if (out === undefined || isFailure(out[0])) return null;
    return decodeResult(CHAIN_METHOD, out[0]);
  }

  /** The first read of the phase: with it, every read the phase made last time. */
  private async prefetch(sig: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.mem.learnt(sig).length === 0 || !this.available()) {
      this.fetched = new Map();
      return this.keep(sig, await this.call(method, ...args));
    }
    const out = await this.withLearnt([method, args], sig);
    // Without the snippet, or a saved log value it lacks: Kong's own answer, alone.
    if (out === undefined || isFailure(out[0]))
      return this.keep(sig, await this.call(method, ...args));
    return this.keep(sig, decodeResult(method, out[0]));
  }

  /** The first read's answer answers its repeats too (the chain's log reads the carrier often). */
  private keep(sig: string, value: unknown): unknown {
    this.fetched?.set(sig, value);
    return value;
  }

  private async exit(method: string, args: unknown[]): Promise<undefined> {
    if (this.pending.length > 0) {
      if (this.confirmed && this.available()) {
        // Kong never answers after an exit: the batch is not awaited either.
        const calls: Queued[] = [...this.pending, [method, args]];
        this.pending = [];
        this.exited_ = true;
        void this.call(
          BATCH_METHOD,
          calls.map(([m, a]) => [m, a, a.length]),
        );
        batchStats.batches++;
        batchStats.callsInBatches += calls.length;
        return undefined;
      }
      const calls = this.pending;
      this.pending = [];
      await this.send(calls);
    }
    this.exited_ = true;
    await this.call(method, ...args);
    return undefined;
  }

  /** At the phase's end: the writes still queued, then what was learnt is kept. */
  async end(): Promise<void> {
    if (!this.exiting && !this.exited_) this.queueAtEnd();
    if (this.exiting) await this.exiting;
    if (!this.exited_ && this.pending.length > 0) {
      const calls = this.pending;
      this.pending = [];
      await this.send(calls);
    }
    this.mem.forgetUnused();
  }
}

/** The batched call for one event, or the plain one in phases that are not batched. */
export function batchedCall(
  call: Call,
  plugin: string,
  instance: string,
  phase: string,
): {
  call: Call;
  end(): Promise<void>;
  exited(): boolean;
  sharedAtEnd?: (key: string, value: () => string) => void;
} {
  if (!(phase in READS)) return { call, end: async () => {}, exited: () => false };
  const b = new PhaseBatch(call, `${plugin}#${instance}`, `${plugin}.${phase}`, Date.now, phase);
  return {
    call: b.handle,
    end: () => b.end(),
    exited: () => b.exited,
    sharedAtEnd: b.sharedAtEnd,
  };
}

/** Forgets everything learnt (tests). */
export function resetBatchMemory(): void {
  resetPhaseMemory();
  absentSince.clear();
  presentAt.clear();
  batchStats.batches = 0;
  batchStats.callsInBatches = 0;
  batchStats.fallbacks = 0;
}
