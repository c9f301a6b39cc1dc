/**
 * Process-wide runtimes (a Milvus client and its opened collection, an embedder) kept per
 * configuration, for the plugins that need one: Kong recreates plugin instances (idle, a
 * config change), so what is costly to open lives at module level, keyed by the settings that
 * define it. A failed opening is tried again only after a cool-down: meanwhile every request
 * gets the same failure at once, so an outage costs a request microseconds, not a connect
 * timeout. A bounded number of configurations per process.
 */
export class RuntimeSlots<T> {
  private readonly slots = new Map<string, { promise: Promise<T>; failedAt: number | null }>();

  constructor(
    /** What a runtime is, in the refusal past the limit: "retrieval", "semantic-cache". */
    private readonly what: string,
    private readonly max = 8,
    private readonly retryCooldownMs = 1000,
  ) {}

  /** The runtime of `key`, opened by `open` (again, after the cool-down, when it failed). */
  get(key: string, open: () => Promise<T>): Promise<T> {
    const slot = this.slots.get(key);
    if (slot && (slot.failedAt === null || Date.now() - slot.failedAt < this.retryCooldownMs)) {
      return slot.promise;
    }
    if (!slot && this.slots.size >= this.max) {
      return Promise.reject(
        new Error(`more than ${this.max} distinct ${this.what} configurations in one process`),
      );
    }
    const fresh = { promise: open(), failedAt: null as number | null };
    fresh.promise.catch(() => {
      fresh.failedAt = Date.now();
    });
    this.slots.set(key, fresh);
    return fresh.promise;
  }
}
