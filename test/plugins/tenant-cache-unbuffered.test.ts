/**
 * A cacheable miss without Kong's buffered proxying (plugins/tenant-cache/capture.ts):
 * kong.yml's capture snippet keeps the answer for the store as it passes, so once an instance
 * has seen its route keep one, its misses no longer turn on `enable_buffering` (an internal
 * subrequest per miss in Kong). Counted by `tenant_cache_miss_answers_total{source}`:
 * - kong.yml's chain: the first miss is buffered, every later one kept, and each is stored
 *   (the same question is then a hit, with the same body);
 * - the control, kong.yml without the capture snippet: every miss buffered, and stored as
 *   before; nothing is ever taken as kept.
 * The snippet's bytes (ASCII as is, anything else as base64, `cut;` past the limit) are the
 * unit test's (test/unit/capture-answer-snippet.test.ts).
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { freePort } from '../../harness/free-port';
import { Closers, send } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlEntry } from '../helpers/kong-yml-door';
import { metricAt } from '../helpers/semantic-door';

const closers = new Closers();
test.after.always(() => closers.closeAll());

async function door(withSnippet: boolean) {
  const port = await freePort();
  const d = await startKongYmlDoor(closers.add, (p: KongYmlEntry) => {
    const c = p.config as Record<string, unknown>;
    if (p.name === 'tenant-cache') c.metrics_port = port;
    if (p.name === 'post-function' && !withSnippet) {
      const filters = (c.body_filter as string[] | undefined) ?? [];
      c.body_filter = filters.filter((f) => !f.includes('capture answer reader'));
    }
  });
  const url = `http://127.0.0.1:${port}/metrics`;
  const answers = async (source: string) =>
    metricAt(url, 'tenant_cache_miss_answers_total', { source });
  const stored = () =>
    metricAt(url, 'tenant_cache_stores_total', { tenant: 'acme', outcome: 'stored' });
  const ask = (q: string) =>
    send(`${d.url}/v1/chat/completions`, {
      headers: { apikey: 'acme-demo-key' },
      body: { model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content: q }] },
    });
  return { d, answers, ask, stored };
}

/** Misses, each asked again once its store ran (the log phase, after the answer). */
async function missesThenHits(
  ask: (q: string) => ReturnType<typeof send>,
  stored: () => Promise<number>,
  n: number,
): Promise<Array<{ miss: string; hit: string; status: string }>> {
  const out: Array<{ miss: string; hit: string; status: string }> = [];
  for (let i = 0; i < n; i++) {
    const before = await stored();
    const q = `unbuffered ${i} ${randomBytes(6).toString('hex')}`;
    const miss = await ask(q);
    if (miss.status !== 200 || miss.headers['x-cache-status'] !== 'MISS') {
      throw new Error(`miss: ${miss.status} ${String(miss.headers['x-cache-status'])}`);
    }
    // Asking again before the store would be a second miss, with an answer of its own.
    for (let k = 0; k < 100 && (await stored()) <= before; k++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const hit = await ask(q);
    out.push({ miss: miss.text, hit: hit.text, status: String(hit.headers['x-cache-status']) });
  }
  return out;
}

test.serial(
  "kong.yml's chain: the first miss is buffered, the next ones kept as they pass",
  async (t) => {
    const { answers, ask, stored } = await door(true);
    const pairs = await missesThenHits(ask, stored, 4);
    for (const p of pairs) {
      t.is(p.status, 'HIT');
      t.is(p.hit, p.miss, 'stored, and answered again byte for byte');
    }
    t.is(await answers('buffered'), 1, 'only until the instance saw the route keep an answer');
    t.is(await answers('kept'), 3, 'the next ones pass through, kept by the snippet');
  },
);

test.serial(
  'control, kong.yml without the capture snippet: every miss buffered, stored as before',
  async (t) => {
    const { answers, ask, stored } = await door(false);
    const pairs = await missesThenHits(ask, stored, 3);
    for (const p of pairs) {
      t.is(p.status, 'HIT');
      t.is(p.hit, p.miss);
    }
    t.is(await answers('buffered'), 3);
    t.is(await answers('kept'), 0);
  },
);
