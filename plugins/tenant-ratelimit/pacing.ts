/**
 * When a fair-queue waiter looks at the queue again. A seat freed by a release is announced
 * (pub/sub, or the release reply in the same process), but upstream tokens refill with time
 * and nobody announces them: the grant happens in whichever acquire runs once they are there.
 * So, waiting on tokens, the head looks again exactly when its tokens are there (the script's
 * `retryHintMs`; its own poll admits it), and a waiter `position` places behind it about
 * `position` request widths later, instead of the whole queue polling at every hint. Waiting
 * on seats, the poll interval is only the safety net.
 *
 * A sleep held to the poll interval is shortened by a random 0-25 %: waiters that entered
 * together (a flood's first requests, all arriving at once) would otherwise look again
 * together at every interval, in waves of tens of scripts that hold up whoever is at the
 * head of the queue at that moment. Measured on the real Kong: 58 of a flood's 80 first
 * requests slept the full interval and polled within the same few milliseconds.
 */
import type { UpstreamCapacity } from '../../lib/redis/fair-queue';

/** The share of the poll interval a full sleep may be cut by, to spread waves. */
export const POLL_JITTER = 0.25;

export function nextLookMs(
  reply: { readonly retryHintMs: number; readonly position: number },
  width: number,
  capacity: Pick<UpstreamCapacity, 'tokensPerMinute' | 'tokenBurst'>,
  pollIntervalMs: number,
  leftMs: number,
  random: () => number = Math.random,
): number {
  let ms = pollIntervalMs;
  if (reply.retryHintMs > 0 && capacity.tokensPerMinute > 0) {
    // A width above the burst is charged the burst (includes/fair-queue.lua, fq_grant).
    const perRequest = (Math.min(width, capacity.tokenBurst) * 60_000) / capacity.tokensPerMinute;
    ms = reply.retryHintMs + Math.max(0, reply.position) * Math.ceil(perRequest);
  }
  if (ms >= pollIntervalMs) ms = Math.round(pollIntervalMs * (1 - POLL_JITTER * random()));
  return Math.max(0, Math.min(leftMs, ms));
}
