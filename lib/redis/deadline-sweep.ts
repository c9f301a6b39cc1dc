/**
 * One deadline for many Redis calls, without a timer per call.
 *
 * Why: a timer per command (node-redis's `AbortSignal.timeout`, or a `setTimeout` raced against
 * the call) is an allocation, a timer-list insert and removal, a promise race and a `finally`
 * for every command of every request, while a healthy Redis answers in well under a millisecond
 * and the deadline almost never fires. Every call of a client has the same deadline, so calls
 * fall due in the order they were made: a FIFO list, swept by one timer that ticks every quarter
 * of the deadline while calls are pending (and stops when none are), is enough. A call is
 * refused between its deadline and one tick after it; settling a call unlinks it in O(1).
 */

/** Thrown by `withDeadline` (lib/redis/client.ts) when Redis has not answered in time. */
export class RedisDeadlineError extends Error {
  override readonly name = 'RedisDeadlineError';
  constructor(readonly deadlineMs: number) {
    super(`Redis did not answer within ${deadlineMs} ms`);
  }
}

interface Pending {
  readonly due: number;
  readonly reject: (err: Error) => void;
  prev: Pending | undefined;
  next: Pending | undefined;
  /** Unlinked: settled, or refused by the sweep. */
  done: boolean;
}

/**
 * Node's timers run on libuv's millisecond clock: a tick may fire a fraction of a millisecond
 * before `performance.now()` reaches a due time. Refusing that little early beats refusing a
 * whole tick late.
 */
const EARLY_MS = 1;

export class DeadlineSweep {
  /** How often the sweep looks, while calls are pending. */
  readonly tickMs: number;
  private head: Pending | undefined;
  private tail: Pending | undefined;
  private count = 0;
  /** Made once, re-armed with `refresh()` (no allocation); unref'd: never holds the process. */
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(
    readonly deadlineMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!Number.isFinite(deadlineMs) || deadlineMs <= 0) {
      throw new RangeError(`deadlineMs must be a positive number, got ${deadlineMs}`);
    }
    this.tickMs = Math.max(1, Math.ceil(deadlineMs / 4));
  }

  /** Calls waiting for an answer (tests, metrics). */
  get pending(): number {
    return this.count;
  }

  /** Whether the sweep's timer is armed (tests: it stops when nothing is pending). */
  get armed(): boolean {
    return this.ticking;
  }

  /** Settles like `command`, or rejects with RedisDeadlineError once the deadline has passed. */
  race<T>(command: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry = this.add(reject);
      command.then(
        (value) => {
          this.remove(entry);
          resolve(value);
        },
        (err: unknown) => {
          this.remove(entry);
          reject(err);
        },
      );
    });
  }

  private add(reject: (err: Error) => void): Pending {
    const entry: Pending = {
      due: this.now() + this.deadlineMs,
      reject,
      prev: this.tail,
      next: undefined,
      done: false,
    };
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
    this.count++;
    if (!this.ticking) this.arm();
    return entry;
  }

  private remove(entry: Pending): void {
    if (entry.done) return;
    entry.done = true;
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.count--;
  }

  private arm(): void {
    this.ticking = true;
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => this.sweep(), this.tickMs);
    this.timer.unref();
  }

  private sweep(): void {
    const now = this.now();
    // Due times only grow along the list (one deadline, calls appended as made).
    while (this.head && this.head.due - now <= EARLY_MS) {
      const entry = this.head;
      this.remove(entry);
      entry.reject(new RedisDeadlineError(this.deadlineMs));
    }
    if (this.head) this.timer?.refresh();
    else this.ticking = false;
  }
}
