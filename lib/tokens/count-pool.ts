/**
 * Long prompts counted off the request path's thread.
 *
 * In the co-hosted chain every plugin of every tenant runs on one thread, and a prompt's count
 * grows with its length: about 0.3-0.6 µs per token of ASCII prose measured in the chain
 * (piece-count.ts; 1.3 µs with tiktoken alone, which still counts other text), up to about
 * 0.1 s for the longest text counted (tokenize.ts `MAX_COUNTED`). Counted inline, one tenant's long prompts
 * hold every other tenant's requests for that long, and cap the process at one core.
 *
 * So a prompt longer than `INLINE_MAX_CHARS` is counted by a worker thread (piscina), with the
 * same tokenizer: the request waits for its own count, the others go on. Shorter prompts are
 * counted inline, where the hand-off (tens of µs) would cost more than it saves. Nothing changes
 * in what is counted: the same function, the same number (count-worker.ts).
 *
 * `KTA_TOKENIZER_THREADS` sets the threads (default 1; 0 counts everything inline). The thread
 * loads its own encodings (tens of MB, once). A failed or refused hand-off (the thread died, its
 * queue of `MAX_QUEUE` is full) is counted inline: a request always gets its count.
 *
 * The threads are shared fairly between tenants: the prompts waiting for them are queued per
 * tenant and handed over one tenant after another (round robin, one prompt per turn), never more
 * than the threads can take at once. One tenant's backlog of long prompts then delays another
 * tenant's long prompt by at most one count per tenant waiting, not by the whole backlog.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Piscina from 'piscina';
import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry';
import type { CountTask } from './count-worker';
import { countPrompt, promptChars, type PromptToCount } from './prompt';
import { notify } from '../pdk/notices';

/** Prompts up to this many characters (about 1,000 tokens of prose) are counted inline. */
export const INLINE_MAX_CHARS = 4096;

/** Prompts waiting for the counting thread, at most; past it a count is made inline. */
export const MAX_QUEUE = 256;

const MAX_THREADS = 8;

/** Where counts were made (metrics and tests). */
export const countStats = { inline: 0, offThread: 0, fallbacks: 0 };

const counts = new Counter({
  name: 'kta_prompt_counts_total',
  help: "Prompts counted for a request's token estimate, by where: inline (short, or no counting thread), thread (the counting thread), fallback (the thread could not take it: counted inline).",
  labelNames: ['where'] as const,
  registers: [registry],
});
// Bound once: an estimate is on every request's path, a label lookup need not be.
const countedInline = counts.labels({ where: 'inline' });
const countedOnThread = counts.labels({ where: 'thread' });
const countedAsFallback = counts.labels({ where: 'fallback' });

new Gauge({
  name: 'kta_prompt_count_queue',
  help: 'Long prompts waiting for the counting thread, all tenants.',
  registers: [registry],
  collect() {
    this.set(waitingTotal);
  },
});

/** A long prompt waiting for a thread, and how its request learns the count. */
interface Waiting {
  readonly prompt: PromptToCount;
  /** undefined: the thread failed it (counted inline by the caller). */
  readonly done: (n: number | undefined) => void;
}

/** Waiting prompts by tenant; the Map's order is the round's order. */
const waiting = new Map<string, Waiting[]>();
let waitingTotal = 0;
/** Prompts on the threads now (at most the threads' number). */
let running = 0;
let threadCount = 0;
/**
 * Which pool the counts in flight belong to: a count still on a pool that `closeCountPool`
 * destroyed ends (rejected) after `running` was reset, and must not take it below zero (a
 * pool made after would then run one prompt more than its threads) or feed it waiting prompts.
 */
let generation = 0;

/** `KTA_TOKENIZER_THREADS`: an integer 0-8, else the default (1). */
export function tokenizerThreads(
  raw: string | undefined = process.env.KTA_TOKENIZER_THREADS,
): number {
  if (raw === undefined || raw.trim() === '') return 1;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 0 && n <= MAX_THREADS ? n : 1;
}

let pool: Piscina<CountTask, number> | null | undefined;

/**
 * The pool, made on first use; null when counting is inline only (no threads asked, or this
 * code runs from its TypeScript sources, where there is no compiled worker to start).
 */
function poolOf(): Piscina<CountTask, number> | null {
  if (pool !== undefined) return pool;
  const filename = path.join(__dirname, 'count-worker.js');
  const raw = process.env.KTA_TOKENIZER_THREADS;
  const threads = tokenizerThreads(raw);
  if (raw !== undefined && raw.trim() !== '' && String(threads) !== raw.trim()) {
    // Kong's error log has it at the next log phase (notices.ts), stderr at once.
    notify(
      `KTA_TOKENIZER_THREADS must be an integer from 0 to ${MAX_THREADS}, got '${raw}': using ${threads}`,
    );
  }
  threadCount = threads;
  pool =
    threads > 0 && existsSync(filename)
      ? new Piscina<CountTask, number>({
          filename,
          minThreads: threads,
          maxThreads: threads,
          maxQueue: MAX_QUEUE,
        })
      : null;
  return pool;
}

/** Starts the counting thread and builds its encodings now, not on the first long prompt. */
export function warmCountPool(): void {
  poolOf()
    ?.run({ warm: true })
    .catch(() => undefined);
}

/** Hands waiting prompts to the threads while one is free: the next tenant in the round first. */
function dispatch(q: Piscina<CountTask, number>): void {
  while (running < threadCount && waitingTotal > 0) {
    const next = waiting.entries().next();
    if (next.done) return;
    const [tenant, list] = next.value;
    const w = list.shift() as Waiting;
    // To the back of the round, with what it still has waiting.
    waiting.delete(tenant);
    if (list.length > 0) waiting.set(tenant, list);
    waitingTotal--;
    running++;
    const mine = generation;
    const ended = (n: number | undefined) => {
      w.done(n);
      if (mine !== generation) return;
      running--;
      dispatch(q);
    };
    q.run(w.prompt).then(
      (n) => ended(Number.isInteger(n) && n >= 0 ? n : undefined),
      () => ended(undefined),
    );
  }
}

/** The count from the threads, in the tenant's turn; undefined when they could not make it. */
function countOnThread(q: Piscina<CountTask, number>, p: PromptToCount, tenant: string) {
  if (waitingTotal >= MAX_QUEUE) return Promise.resolve(undefined);
  return new Promise<number | undefined>((done) => {
    const list = waiting.get(tenant);
    if (list) list.push({ prompt: p, done });
    else waiting.set(tenant, [{ prompt: p, done }]);
    waitingTotal++;
    dispatch(q);
  });
}

/**
 * The prompt's tokens: inline when short, else on the counting thread, in `tenant`'s turn
 * (the tenant's id; requests without one share a turn). Never throws.
 */
export async function countPromptOffThread(p: PromptToCount, tenant = ''): Promise<number> {
  const q = promptChars(p) > INLINE_MAX_CHARS ? poolOf() : null;
  if (q) {
    const n = await countOnThread(q, p, tenant);
    if (n !== undefined) {
      countStats.offThread++;
      countedOnThread.inc();
      return n;
    }
    countStats.fallbacks++;
    countedAsFallback.inc();
    return countPrompt(p);
  }
  countStats.inline++;
  countedInline.inc();
  return countPrompt(p);
}

/** Prompts on the threads and waiting for one, now. */
export function countPoolLoad(): { running: number; waiting: number } {
  return { running, waiting: waitingTotal };
}

/** Stops the counting threads (tests; a process that ends). */
export async function closeCountPool(): Promise<void> {
  const q = pool;
  pool = undefined;
  generation++;
  running = 0;
  if (q) await q.destroy();
  // Whatever still waited gets its count inline from its caller.
  for (const list of waiting.values()) for (const w of list) w.done(undefined);
  waiting.clear();
  waitingTotal = 0;
}
