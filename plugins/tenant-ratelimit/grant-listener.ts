/**
 * Wakes this process's waiters when the fair queue grants them a seat. The queue script
 * announces the tickets it granted on the queue's pub/sub channel; one subscriber connection
 * per process and channel hands each id to the waiter holding it, which then claims its seat
 * at once instead of at its next poll. The poll stays as the safety net: a lost message, a
 * subscriber reconnecting, or a grant that waits for upstream tokens (no release announces it).
 */
import type { RedisClient } from '../../lib/redis/client';
import { grantedTickets } from '../../lib/redis/fair-queue';

/** How long a grant that arrived before its waiter registered is kept for it. */
const EARLY_GRANT_MS = 5000;

export class GrantListener {
  private readonly waiters = new Map<string, (granted: boolean) => void>();
  /**
   * Grants announced while their waiter was between two waits (its poll in flight, or the
   * microtasks between its first look at the queue and its first wait): kept briefly so the
   * next wait returns at once instead of at the next poll.
   */
  private readonly early = new Map<string, number>();
  private lastPrune = 0;
  private started = false;

  constructor(
    private readonly client: RedisClient,
    private readonly channel: string,
    private readonly log: (message: string) => void,
  ) {}

  /**
   * Starts the subscriber once; failures are logged and leave the poll to do the work. A
   * subscriber that could not connect (Redis or a cluster down when the first request came) is
   * tried again with a capped backoff, so grant announcements are not off for the life of the
   * process.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.subscribe(0);
  }

  private subscribe(attempt: number): void {
    const sub = this.client.duplicate();
    let reported = false;
    sub.on('error', (err: unknown) => {
      if (reported) return;
      reported = true;
      this.log(
        `grant listener on ${this.channel}: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
    // 'ready' on a single server, 'connect' on a cluster client: either ends an outage.
    sub.on('ready', () => (reported = false));
    sub.on('connect', () => (reported = false));
    sub
      .connect()
      .then(() =>
        sub.subscribe(this.channel, (message: string) => {
          for (const id of grantedTickets(message)) this.wake(id);
        }),
      )
      .catch((err: unknown) => {
        this.log(
          `grant listener on ${this.channel} not started (attempt ${attempt + 1}): ${String(err)}`,
        );
        void Promise.resolve(sub.destroy?.()).catch(() => undefined);
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        setTimeout(() => this.subscribe(attempt + 1), delay).unref();
      });
  }

  /** Resolves true when `ticket` is announced as granted, false after `ms`. */
  wait(ticket: string, ms: number): Promise<boolean> {
    if (this.early.delete(ticket)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (granted: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(ticket);
        resolve(granted);
      };
      const timer = setTimeout(() => done(false), Math.max(0, ms));
      this.waiters.set(ticket, done);
    });
  }

  /**
   * Wakes `ticket`'s waiter (a grant announced on the channel, or made by a release in this
   * process); a grant whose waiter is not waiting right now is kept for its next wait.
   */
  wake(ticket: string): void {
    const waiter = this.waiters.get(ticket);
    if (waiter) {
      waiter(true);
      return;
    }
    const now = Date.now();
    if (this.early.size >= 1000 && now - this.lastPrune > 1000) {
      this.lastPrune = now;
      for (const [id, at] of this.early) if (now - at > EARLY_GRANT_MS) this.early.delete(id);
    }
    // Bounded: a grant for a waiter of another process is never claimed here.
    if (this.early.size < 10_000) this.early.set(ticket, now);
  }

  /** Waiters in this process now. */
  get size(): number {
    return this.waiters.size;
  }
}

const listeners = new Map<string, GrantListener>();

/** The process-wide listener for this client and channel. */
export function grantListener(
  client: RedisClient,
  channel: string,
  log: (message: string) => void,
): GrantListener {
  let l = listeners.get(channel);
  if (!l) {
    l = new GrantListener(client, channel, log);
    listeners.set(channel, l);
  }
  return l;
}
