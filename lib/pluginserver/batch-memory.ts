/**
 * What the PDK batch (batch.ts) learns per plugin and phase: the reads the phase made (method
 * and arguments), so that the next event of the same code fetches them all with its first call.
 * Bounded: at most MAX_LEARNT reads per plugin and phase, and a read unused for
 * FORGET_AFTER_EVENTS events of the phase is forgotten.
 */

/** Learnt reads unused for this many events of the phase are no longer fetched. */
const FORGET_AFTER_EVENTS = 64;
/** At most this many learnt reads per plugin and phase. */
const MAX_LEARNT = 16;

export interface Learnt {
  readonly method: string;
  readonly args: unknown[];
  lastUsed: number;
}

/** A PDK call's identity: the same method with the same arguments reads the same thing. */
export function signature(method: string, args: unknown[]): string {
  return args.length === 0 ? method : `${method}\u0000${JSON.stringify(args)}`;
}

export class PhaseMemory {
  /** Events of the phase so far (the clock of `lastUsed`). */
  events = 0;
  private readonly reads = new Map<string, Learnt>();

  remember(sig: string, method: string, args: unknown[]): void {
    const known = this.reads.get(sig);
    if (known) {
      known.lastUsed = this.events;
      return;
    }
    if (this.reads.size >= MAX_LEARNT) return;
    this.reads.set(sig, { method, args, lastUsed: this.events });
  }

  /** The reads learnt, but the one with signature `except`. */
  learnt(except?: string): Array<[string, Learnt]> {
    return [...this.reads.entries()].filter(([s]) => s !== except);
  }

  /** At a phase's end: forgets the reads no recent event made. */
  forgetUnused(): void {
    const cutoff = this.events - FORGET_AFTER_EVENTS;
    for (const [s, l] of this.reads) if (l.lastUsed < cutoff) this.reads.delete(s);
  }
}

const memory = new Map<string, PhaseMemory>();

/** The memory of one plugin's phase (`phaseKey`: plugin and phase). */
export function phaseMemory(phaseKey: string): PhaseMemory {
  let m = memory.get(phaseKey);
  if (!m) {
    m = new PhaseMemory();
    memory.set(phaseKey, m);
  }
  return m;
}

/** Forgets everything learnt (tests). */
export function resetPhaseMemory(): void {
  memory.clear();
}
