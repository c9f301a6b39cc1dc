/**
 * When a fair-queue waiter looks at the queue again. A seat freed by a release is announced
 * (pub/sub, or the release reply in the same process), but upstream tokens refill with time
 * and nobody announces them: the grant happens in whichever acquire runs once they are there.
 * So, waiting on tokens, the head looks again exactly when its tokens are there (the script's
 * `retryHintMs`; its own poll admits it), and a waiter `position` places behind it about
 * `position` request widths later, instead of the whole queue polling at every hint. Waiting
 * on seats, the poll interval is only the safety net.
 */
import type { UpstreamCapacity } from '../../lib/redis/fair-queue';

export function nextLookMs(
  reply: { readonly retryHintMs: number; readonly position: number },
  width: number,
  capacity: Pick<UpstreamCapacity, 'tokensPerMinute' | 'tokenBurst'>,
  pollIntervalMs: number,
  leftMs: number,
): number {
  let ms = pollIntervalMs;
  if (reply.retryHintMs > 0 && capacity.tokensPerMinute > 0) {
    // A width above the burst is charged the burst (fair-queue-8.lua).
    const perRequest = (Math.min(width, capacity.tokenBurst) * 60_000) / capacity.tokensPerMinute;
    ms = reply.retryHintMs + Math.max(0, reply.position) * Math.ceil(perRequest);
  }
  return Math.max(0, Math.min(leftMs, pollIntervalMs, ms));
}
