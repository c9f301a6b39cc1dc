/**
 * Wakes this process's waiters when the fair queue grants them a seat. The queue script
 * announces the tickets it granted on the queue's pub/sub channel; one subscriber connection
 * per process and channel hands each id to the waiter holding it, which then claims its seat
 * at once instead of at its next poll. The poll stays as the safety net: a lost message, a
 * subscriber reconnecting, or a grant that waits for upstream tokens (no release announces it).
 */
import type { RedisClient } from '../../lib/redis/client';
import { grantedTickets } from '../../lib/redis/fair-queue';

export class GrantListener {
  private readonly waiters = new Map<string, (granted: boolean) => void>();
  private started = false;

  constructor(
    private readonly client: RedisClient,
    private readonly channel: string,
    private readonly log: (message: string) => void,
  ) {}

  /** Starts the subscriber once; failures are logged and leave the poll to do the work. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const sub = this.client.duplicate();
    let reported = false;
    sub.on('error', (err: unknown) => {
      if (reported) return;
      reported = true;
      this.log(
        `grant listener on ${this.channel}: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
    sub.on('ready', () => (reported = false));
    sub
      .connect()
      .then(() =>
        sub.subscribe(this.channel, (message: string) => {
          for (const id of grantedTickets(message)) this.waiters.get(id)?.(true);
        }),
      )
      .catch((err: unknown) => {
        this.log(`grant listener on ${this.channel} not started: ${String(err)}`);
      });
  }

  /** Resolves true when `ticket` is announced as granted, false after `ms`. */
  wait(ticket: string, ms: number): Promise<boolean> {
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

  /** Wakes `ticket`'s waiter if it is in this process (a release here granted it). */
  wake(ticket: string): void {
    this.waiters.get(ticket)?.(true);
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
