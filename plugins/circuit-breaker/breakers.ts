/**
 * Breakers, one per scope key (an upstream target, or a tenant on an upstream target), built
 * on cockatiel's CircuitBreakerPolicy with its Consecutive or Sampling breaker.
 *
 * The verdict on an upstream call arrives only in the `log` phase, so each admitted request
 * runs `policy.execute()` on a promise that `log` settles (or a timer, when the log event is
 * lost). cockatiel would make every caller that arrives while half-open wait for the probe's
 * verdict — here, in `access`, for as long as the probe runs. `admit` therefore guards the
 * states itself: open → refuse until half_open_after; half-open → refuse while the one probe
 * cockatiel runs is out; only closed (or open and due) reaches `execute`.
 */
import {
  CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  SamplingBreaker,
  circuitBreaker,
  handleWhen,
} from 'cockatiel';
import type { BreakerConfig } from './schema';

/** An upstream failure the breaker counts. */
export class UpstreamFailure extends Error {
  override readonly name = 'UpstreamFailure';
  constructor(readonly kind: string) {
    super(`upstream failure: ${kind}`);
  }
}

/**
 * A request that ended without a verdict on the upstream (refused by a later plugin, a Kong
 * error before proxying, an upstream 429 when not counted, a lost log event): not handled by
 * the policy, so cockatiel counts neither a success nor a failure in the closed state.
 */
export class NoVerdict extends Error {
  override readonly name = 'NoVerdict';
  constructor(readonly kind: string) {
    super(`no verdict on the upstream: ${kind}`);
  }
}

export type Verdict =
  { kind: 'success' } | { kind: 'failure'; reason: string } | { kind: 'none'; reason: string };

export type StateName = 'closed' | 'open' | 'half_open';

export function stateName(s: CircuitState): StateName {
  if (s === CircuitState.Open || s === CircuitState.Isolated) return 'open';
  if (s === CircuitState.HalfOpen) return 'half_open';
  return 'closed';
}

export interface BreakerListener {
  transition(breaker: UpstreamBreaker, to: StateName): void;
  /** A new breaker (closed) exists. */
  created?(breaker: UpstreamBreaker): void;
}

export type Admission =
  | { admitted: true; probe: boolean; settle(v: Verdict): void }
  | { admitted: false; state: 'open' | 'half_open'; retryAfterMs: number };

/** One breaker: a cockatiel policy and the guard around it. */
export class UpstreamBreaker {
  readonly policy: CircuitBreakerPolicy;
  lastUsed = Date.now();

  constructor(
    readonly key: string,
    /** Metric labels: the upstream's name and the tenant (`*` for a shared breaker). */
    readonly upstreamLabel: string,
    readonly tenantLabel: string,
    private readonly config: BreakerConfig,
    listener: BreakerListener,
  ) {
    const breaker =
      config.kind === 'sampling'
        ? new SamplingBreaker({
            threshold: config.sampling_threshold,
            duration: config.sampling_duration_ms,
            minimumRps: config.sampling_minimum_rps,
          })
        : new ConsecutiveBreaker(config.consecutive_failures);
    this.policy = circuitBreaker(
      handleWhen((e) => e instanceof UpstreamFailure),
      { halfOpenAfter: config.half_open_after_ms, breaker },
    );
    this.policy.onStateChange((s) => listener.transition(this, stateName(s)));
    listener.created?.(this);
  }

  get state(): StateName {
    return stateName(this.policy.state);
  }

  /** When the open breaker lets its probe through (ms epoch); 0 when not open. */
  private halfOpenAt(): number {
    const own = (this.policy.toJSON() as { ownState?: { value?: number; openedAt?: number } })
      .ownState;
    if (own?.value !== CircuitState.Open || typeof own.openedAt !== 'number') return 0;
    return own.openedAt + this.config.half_open_after_ms;
  }

  /** Milliseconds until a request could get through (0 when closed). */
  retryAfterMs(): number {
    const s = this.policy.state;
    // The probe's verdict comes when it ends, which nobody knows: ask for a short wait.
    if (s === CircuitState.HalfOpen) return 1000;
    if (s !== CircuitState.Open) return 0;
    return Math.max(0, this.halfOpenAt() - Date.now());
  }

  /** Would `admit` let a request through now? (No side effect.) */
  wouldAdmit(): boolean {
    const s = this.policy.state;
    if (s === CircuitState.Closed) return true;
    return s === CircuitState.Open && this.halfOpenAt() <= Date.now();
  }

  /**
   * Fail fast, or start the call: cockatiel runs the function at once when closed, or makes
   * this request the half-open probe when the open period is over.
   */
  admit(): Admission {
    this.lastUsed = Date.now();
    const s = this.policy.state;
    if (s === CircuitState.HalfOpen) {
      return { admitted: false, state: 'half_open', retryAfterMs: this.retryAfterMs() };
    }
    if (s !== CircuitState.Closed && !this.wouldAdmit()) {
      return { admitted: false, state: 'open', retryAfterMs: this.retryAfterMs() };
    }
    const probe = s !== CircuitState.Closed;
    let resolve: () => void = () => undefined;
    let reject: (e: Error) => void = () => undefined;
    const outcome = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // execute() reaches our function synchronously (closed), or turns the breaker half-open
    // synchronously with this call as its test (open and due): nothing can slip in between.
    this.policy.execute(() => outcome).catch(() => undefined);
    let settled = false;
    return {
      admitted: true,
      probe,
      settle: (v) => {
        if (settled) return;
        settled = true;
        if (v.kind === 'success') resolve();
        else if (v.kind === 'failure') reject(new UpstreamFailure(v.reason));
        // cockatiel closes a half-open breaker on an error its policy does not handle; a
        // probe that proved nothing must not close it, so it counts as a failure.
        else if (probe) reject(new UpstreamFailure(`probe_${v.reason}`));
        else reject(new NoVerdict(v.reason));
      },
    };
  }
}

/**
 * Every breaker of this plugin-server process (per gateway node). Closed breakers unused for
 * `idleMs` are dropped, so tenant-scoped breakers do not accumulate without bound.
 */
export class BreakerRegistry {
  private readonly breakers = new Map<string, UpstreamBreaker>();
  private lastSweep = Date.now();

  constructor(
    private readonly listener: BreakerListener,
    private readonly idleMs = 15 * 60_000,
  ) {}

  get(
    key: string,
    upstreamLabel: string,
    tenantLabel: string,
    config: BreakerConfig,
  ): UpstreamBreaker {
    this.sweep();
    let b = this.breakers.get(key);
    if (!b) {
      b = new UpstreamBreaker(key, upstreamLabel, tenantLabel, config, this.listener);
      this.breakers.set(key, b);
    }
    return b;
  }

  get size(): number {
    return this.breakers.size;
  }

  private sweep(): void {
    const now = Date.now();
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [k, b] of this.breakers) {
      if (b.state === 'closed' && now - b.lastUsed > this.idleMs) this.breakers.delete(k);
    }
  }
}
