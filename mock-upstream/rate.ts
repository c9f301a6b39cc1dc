/**
 * A request-rate quota standing in for a provider's requests-per-minute limit: a request may
 * *start* only when the quota has a start left. Starts refill continuously at `perSecond`, up
 * to `burst` at once (a token bucket); beyond it a request either waits first-in first-out for
 * its start or is turned away, as the `overCapacity` knob says. Unlike the seats of
 * `capacity.ts`, the quota does not care how long a request then takes: with no capacity
 * limit, any number of started requests may be in service at once.
 */
import type { Admission } from './capacity';

export type RateAdmission = Exclude<Admission, { kind: 'admitted' }> | { kind: 'started' };

export interface RateGate {
  /** 0 = no quota (every request starts at once, the queue is let go). */
  setRate(perSecond: number, burst: number): void;
  /** Resolves when the request may start; `abandoned` if `signal` aborts while it waits. */
  enter(overCapacity: 'queue' | 'reject', signal: AbortSignal): Promise<RateAdmission>;
  /** Requests waiting for a start right now. */
  readonly queued: number;
}

interface Waiter {
  start: () => void;
}

/** `now` (ms, monotonic) is injectable so tests can drive the clock. */
export function createRateGate(
  initialPerSecond: number,
  initialBurst: number,
  now: () => number = () => performance.now(),
): RateGate {
  let perSecond = initialPerSecond;
  let burst = Math.max(1, initialBurst);
  let tokens = burst;
  let last = now();
  let timer: NodeJS.Timeout | undefined;
  const waiters: Waiter[] = [];

  function refill(): void {
    const t = now();
    if (perSecond > 0) tokens = Math.min(burst, tokens + ((t - last) * perSecond) / 1000);
    last = t;
  }

  /** Starts waiting requests while the bucket allows; sets a timer for the next start. */
  function pump(): void {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    refill();
    while (waiters.length > 0 && (perSecond === 0 || tokens >= 1)) {
      if (perSecond > 0) tokens -= 1;
      waiters.shift()?.start();
    }
    if (waiters.length > 0) {
      const ms = ((1 - tokens) * 1000) / perSecond;
      timer = setTimeout(pump, Math.max(1, Math.ceil(ms)));
    }
  }

  return {
    setRate(nextPerSecond, nextBurst) {
      refill();
      perSecond = nextPerSecond;
      burst = Math.max(1, nextBurst);
      tokens = Math.min(tokens, burst);
      pump();
    },
    enter(overCapacity, signal) {
      if (signal.aborted) return Promise.resolve({ kind: 'abandoned' });
      if (perSecond === 0) return Promise.resolve({ kind: 'started' });
      refill();
      if (waiters.length === 0 && tokens >= 1) {
        tokens -= 1;
        return Promise.resolve({ kind: 'started' });
      }
      if (overCapacity === 'reject') return Promise.resolve({ kind: 'rejected' });
      return new Promise<RateAdmission>((resolve) => {
        const waiter: Waiter = {
          start: () => {
            signal.removeEventListener('abort', onAbort);
            resolve({ kind: 'started' });
          },
        };
        const onAbort = (): void => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) waiters.splice(i, 1);
          resolve({ kind: 'abandoned' });
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiters.push(waiter);
        pump();
      });
    },
    get queued() {
      return waiters.length;
    },
  };
}
