/**
 * Long prompts counted on the counting thread (lib/tokens/count-pool.ts). The thread runs the
 * compiled worker, so these tests load the build (dist/, made by `npm test` before ava runs),
 * as the plugin server does; from the TypeScript sources every count is inline.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type * as CountPool from '../../lib/tokens/count-pool';
import type * as Prompt from '../../lib/tokens/prompt';

const ROOT = path.resolve(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pool = require(path.join(ROOT, 'dist', 'lib', 'tokens', 'count-pool.js')) as typeof CountPool;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const prompt = require(path.join(ROOT, 'dist', 'lib', 'tokens', 'prompt.js')) as typeof Prompt;

/**
 * Words of English prose (this repository's architecture page), tables and code left out: a
 * table's padding is long runs of spaces and dashes, a few tokens each, whose share would move
 * with the page's formatting. Repeated to be long enough for every test.
 */
const WORDS = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8')
  .split(/\s+/)
  .filter((w) => /^[A-Za-z][A-Za-z,.;:'()-]*$/.test(w))
  .join(' ');
const PROSE = Array.from({ length: 4 }, () => WORDS).join(' ');

function promptOf(chars: number, from = 0): Prompt.PromptToCount {
  return {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', text: 'Answer from the context.' },
      { role: 'user', text: PROSE.slice(from, from + chars) },
    ],
  };
}

/**
 * The same prose with a non-ASCII character in every word, which tiktoken counts whole (ASCII
 * text is mostly counted in JavaScript, lib/tokens/piece-count.ts, 4-6 times faster): for a test
 * that must close the pool while a count is still being made. With ASCII prose the thread could
 * finish first, and piscina then throws on the answer of a task its destroy() had dropped.
 */
function slowPromptOf(chars: number, from = 0): Prompt.PromptToCount {
  const p = promptOf(chars, from);
  return {
    ...p,
    messages: p.messages.map((m, i) => (i === 1 ? { ...m, text: m.text.replace(/e/g, 'é') } : m)),
  };
}

test.after.always(() => pool.closeCountPool());

test.serial('a long prompt is counted on the counting thread, to the same number', async (t) => {
  const p = { ...promptOf(20_000), tools: JSON.stringify([{ type: 'function', name: 'f' }]) };
  const before = { ...pool.countStats };
  const n = await pool.countPromptOffThread(p);
  t.is(n, prompt.countPrompt(p));
  t.true(n > 3000);
  t.is(pool.countStats.offThread, before.offThread + 1);
  t.is(pool.countStats.inline, before.inline);
});

test.serial('a short prompt is counted inline', async (t) => {
  const p = promptOf(pool.INLINE_MAX_CHARS - 200);
  const before = { ...pool.countStats };
  t.is(await pool.countPromptOffThread(p), prompt.countPrompt(p));
  t.is(pool.countStats.inline, before.inline + 1);
  t.is(pool.countStats.offThread, before.offThread);
});

test.serial('the thread counts while this thread goes on serving', async (t) => {
  // About 0.05 s of counting: inline, nothing else could run until it is done.
  const p = slowPromptOf(60_000);
  await pool.countPromptOffThread(promptOf(5000)); // the thread is up and its encodings built
  const order: string[] = [];
  const counted = pool.countPromptOffThread(p).then(() => order.push('counted'));
  setImmediate(() => order.push('another request'));
  await counted;
  t.deepEqual(order, ['another request', 'counted']);
});

test.serial(
  "one tenant's backlog of long prompts does not hold another tenant's: the thread takes turns",
  async (t) => {
    await pool.countPromptOffThread(promptOf(5000)); // the thread is up
    const order: string[] = [];
    // globex queues 12 long prompts (each about 10 ms of counting), then acme one.
    const globex = Array.from({ length: 12 }, (_, i) =>
      pool
        .countPromptOffThread(promptOf(30_000, i * 11), 'globex')
        .then(() => order.push(`globex ${i}`)),
    );
    const acmePrompt = promptOf(30_000, 5);
    const acme = pool.countPromptOffThread(acmePrompt, 'acme').then((n) => {
      order.push('acme');
      return n;
    });
    t.is(await acme, prompt.countPrompt(acmePrompt));
    await Promise.all(globex);
    // First come, first served would put acme last; in turns it waits for the count the
    // thread was making when it came and for globex's one turn in the round (globex's second
    // prompt was waiting before acme's came).
    t.true(order.indexOf('acme') <= 2, order.join(', '));
    t.deepEqual(
      order.filter((o) => o !== 'acme'),
      Array.from({ length: 12 }, (_, i) => `globex ${i}`),
      "a tenant's own prompts stay in its order",
    );
  },
);

test.serial(
  'a count cut off by closing the pool is made here, and the next pool still counts one prompt at a time',
  async (t) => {
    await pool.countPromptOffThread(promptOf(5000)); // the thread is up
    const cut = slowPromptOf(60_000, 3);
    const counting = pool.countPromptOffThread(cut, 'acme');
    t.is(pool.countPoolLoad().running, 1);
    await pool.closeCountPool();
    t.is(await counting, prompt.countPrompt(cut), 'counted inline once its thread was gone');
    t.deepEqual(pool.countPoolLoad(), { running: 0, waiting: 0 });
    // A new pool (one thread): three long prompts, one on the thread and two waiting.
    const prompts = [1, 2, 3].map((i) => promptOf(30_000, i * 13));
    const counts = prompts.map((p) => pool.countPromptOffThread(p, 'globex'));
    await new Promise((r) => setImmediate(r));
    t.deepEqual(pool.countPoolLoad(), { running: 1, waiting: 2 });
    t.deepEqual(
      await Promise.all(counts),
      prompts.map((p) => prompt.countPrompt(p)),
    );
    t.deepEqual(pool.countPoolLoad(), { running: 0, waiting: 0 });
  },
);

test.serial('past its queue a count is made here: every prompt gets its count', async (t) => {
  const prompts = Array.from({ length: pool.MAX_QUEUE + 40 }, (_, i) =>
    promptOf(pool.INLINE_MAX_CHARS + 100, i * 7),
  );
  const before = { ...pool.countStats };
  const counts = await Promise.all(prompts.map((p) => pool.countPromptOffThread(p)));
  t.deepEqual(
    counts,
    prompts.map((p) => prompt.countPrompt(p)),
  );
  t.true(pool.countStats.fallbacks > before.fallbacks, 'some were refused by the full queue');
  t.true(pool.countStats.offThread > before.offThread);
});

test.serial('kta_prompt_counts_total counts where each prompt was counted', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { registry } = require(path.join(ROOT, 'dist', 'lib', 'metrics', 'registry.js')) as {
    registry: { getSingleMetricAsString(name: string): Promise<string> };
  };
  const value = async (where: string) => {
    const text = await registry.getSingleMetricAsString('kta_prompt_counts_total');
    const m = new RegExp(`where="${where}"} (\\d+)`).exec(text);
    return m ? Number(m[1]) : 0;
  };
  const [thread, inline] = [await value('thread'), await value('inline')];
  await pool.countPromptOffThread(promptOf(9000));
  await pool.countPromptOffThread(promptOf(100));
  t.is(await value('thread'), thread + 1);
  t.is(await value('inline'), inline + 1);
});

test('KTA_TOKENIZER_THREADS: 0-8 threads, anything else the default of one', (t) => {
  t.is(pool.tokenizerThreads(undefined), 1);
  t.is(pool.tokenizerThreads(''), 1);
  t.is(pool.tokenizerThreads('0'), 0);
  t.is(pool.tokenizerThreads('3'), 3);
  t.is(pool.tokenizerThreads('9'), 1);
  t.is(pool.tokenizerThreads('1.5'), 1);
  t.is(pool.tokenizerThreads('two'), 1);
});

test('what a count reads: roles, texts, names and tools', (t) => {
  const p: Prompt.PromptToCount = {
    model: 'gpt-4o',
    messages: [{ role: 'user', text: 'abc', name: 'zed' }],
    tools: '[]',
  };
  t.is(prompt.promptChars(p), 4 + 3 + 3 + 2);
});

/** A long prompt counted in a fresh process started with `env`: where it was counted, what it logged. */
function countInChild(env: Record<string, string>): { stats: unknown; stderr: string } {
  const script = `
    const cp = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'tokens', 'count-pool.js'))});
    cp.countPromptOffThread({ model: 'gpt-4o', messages: [{ role: 'user', text: 'y'.repeat(6000) }] })
      .then(() => { process.stdout.write(JSON.stringify(cp.countStats)); return cp.closeCountPool(); });`;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`the child failed (${r.status}): ${r.stderr}`);
  return { stats: JSON.parse(r.stdout) as unknown, stderr: r.stderr };
}

test('KTA_TOKENIZER_THREADS=0: every prompt is counted inline', (t) => {
  const r = countInChild({ KTA_TOKENIZER_THREADS: '0' });
  t.deepEqual(r.stats, { inline: 1, offThread: 0, fallbacks: 0 });
  t.is(r.stderr, '');
});

test('a KTA_TOKENIZER_THREADS that is not a count is said in the log, and the default used', (t) => {
  const r = countInChild({ KTA_TOKENIZER_THREADS: 'two' });
  t.regex(r.stderr, /KTA_TOKENIZER_THREADS must be an integer from 0 to 8, got 'two': using 1/);
  t.deepEqual(r.stats, { inline: 0, offThread: 1, fallbacks: 0 });
});
