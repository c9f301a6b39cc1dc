/**
 * A counting semaphore standing in for an upstream's limited serving slots (a GPU box that can
 * run N generations at once). Beyond capacity a request either waits first-in first-out for a
 * slot or is turned away, as the `overCapacity` knob says.
 */

export type Admission =
  { kind: 'admitted'; release: () => void } | { kind: 'rejected' } | { kind: 'abandoned' };

interface Waiter {
  admit: (release: () => void) => void;
}

export interface CapacityGate {
  /** 0 = unlimited. Raising it admits queued requests at once. */
  setCapacity(capacity: number): void;
  /** Resolves when the request may be served; `abandoned` if `signal` aborts while queued. */
  enter(overCapacity: 'queue' | 'reject', signal: AbortSignal): Promise<Admission>;
  readonly inFlight: number;
  readonly maxInFlight: number;
  readonly queued: number;
  resetMaxInFlight(): void;
}

export function createCapacityGate(initialCapacity: number): CapacityGate {
  let capacity = initialCapacity;
  let inFlight = 0;
  let maxInFlight = 0;
  const waiters: Waiter[] = [];

  const hasRoom = (): boolean => capacity === 0 || inFlight < capacity;

  function occupy(): () => void {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      inFlight -= 1;
      admitWaiting();
    };
  }

  function admitWaiting(): void {
    while (waiters.length > 0 && hasRoom()) waiters.shift()?.admit(occupy());
  }

  return {
    setCapacity(next) {
      capacity = next;
      admitWaiting();
    },
    enter(overCapacity, signal) {
      if (signal.aborted) return Promise.resolve({ kind: 'abandoned' });
      if (hasRoom() && waiters.length === 0) {
        return Promise.resolve({ kind: 'admitted', release: occupy() });
      }
      if (overCapacity === 'reject') return Promise.resolve({ kind: 'rejected' });
      return new Promise<Admission>((resolve) => {
        const waiter: Waiter = {
          admit: (release) => {
            signal.removeEventListener('abort', onAbort);
            resolve({ kind: 'admitted', release });
          },
        };
        const onAbort = (): void => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) waiters.splice(i, 1);
          resolve({ kind: 'abandoned' });
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiters.push(waiter);
      });
    },
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get queued() {
      return waiters.length;
    },
    resetMaxInFlight() {
      maxInFlight = inFlight;
    },
  };
}
