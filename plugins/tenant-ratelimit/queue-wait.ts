/**
 * Waiting in the fair queue for a seat of the shared upstream: a grant announced on the
 * queue's channel wakes the waiter at once (grant-listener.ts), and a poll paced by
 * pacing.ts is the safety net; at the deadline the waiter leaves the queue.
 */
import type { AcquireResult, UpstreamCapacity } from '../../lib/redis/fair-queue';
import type { GrantListener } from './grant-listener';
import * as metrics from './metrics';
import { nextLookMs } from './pacing';
import type { Ticket } from './ticket';

/** The fair queue as a waiter uses it (limiters/redis.ts); each call is one round trip. */
export interface QueueDoor {
  readonly capacity: UpstreamCapacity;
  readonly pollIntervalMs: number;
  listener(): GrantListener;
  /** A poll: the same acquire as on entry. */
  poll(t: Ticket): Promise<AcquireResult>;
  /** Makes an announced grant a full lease, without holding the request back. */
  claim(t: Ticket): void;
  /** Leaves the queue (or hands back a seat granted in the last instant); never throws. */
  leave(t: Ticket): Promise<void>;
}

export interface Granted {
  /** Granted after a wait. */
  readonly queued: boolean;
  /** Others waiting when it was granted at once. */
  readonly waiting: number;
}

/**
 * Waits until granted; null at the ticket's deadline (it left the queue). `first`: the
 * acquire already sent, if any.
 */
export async function waitInQueue(
  q: QueueDoor,
  t: Ticket,
  first: AcquireResult | null,
): Promise<Granted | null> {
  let r = first ?? (await q.poll(t));
  if (r.granted) return { queued: false, waiting: r.waiting };

  const listener = q.listener();
  listener.start();
  const labels = { tenant: t.tenantLabel, class: t.serviceClass };
  metrics.waiting.inc(labels);
  try {
    for (;;) {
      const left = t.deadline - Date.now();
      if (left <= 0) break;
      const sleepMs = nextLookMs(r, t.width, q.capacity, q.pollIntervalMs, left);
      if (await listener.wait(t.lease, sleepMs)) {
        // The seat is ours (a claim window); the claim that makes it a full lease goes out
        // without holding the request back.
        q.claim(t);
        return { queued: true, waiting: 0 };
      }
      r = await q.poll(t);
      if (r.granted) return { queued: true, waiting: 0 };
    }
  } finally {
    metrics.waiting.dec(labels);
  }
  await q.leave(t);
  return null;
}
