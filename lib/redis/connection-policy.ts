/**
 * What every connection of ours does the same, standalone or cluster (client.ts says why):
 * a bounded command queue, no per-command timer (the deadline sweep keeps time instead), and
 * reconnection forever with capped exponential backoff.
 */

/** Commands waiting to be written or answered, per client; beyond it, calls fail at once. */
export const MAX_PENDING_COMMANDS = 10_000;

/**
 * node-redis 6.3 gives every command a 5 s `timeout` unless told otherwise (client/index.js:
 * `{ timeout: DEFAULT_COMMAND_TIMEOUT, ...commandOptions }`), i.e. an AbortSignal.timeout each;
 * 0 turns it off (commands-queue.js arms one only for a truthy timeout). The deadline is
 * `withDeadline`'s sweep instead.
 */
export const NO_PER_COMMAND_TIMER = { timeout: 0 } as const;

const RECONNECT_BASE_MS = 50;
const RECONNECT_CAP_MS = 2000;
const RECONNECT_JITTER_MS = 100;

/** Exponential backoff, capped; never gives up, so the client recovers on its own. */
export function reconnectDelayMs(retries: number): number {
  const exp = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.min(retries, 16));
  return exp + Math.floor(Math.random() * RECONNECT_JITTER_MS);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
