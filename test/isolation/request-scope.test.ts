/**
 * The request scope under concurrency, through the whole kong.yml chain (co-hosted in one
 * plugin-server process by default, so every request's facts sit side by side in one Node
 * process): acme's and globex's requests interleaved, each carrying a marker of its own. What
 * the upstream receives for each request is that request's own body: its own marker, its
 * tenant's headers, acme's persona only in acme's requests. A scope read by the wrong request
 * would send one tenant's prompt (or persona) under the other's name.
 */
import test from 'ava';
import { send } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';

const PERSONA = "You are Acme Corp's support assistant";

/** Prose filler that makes a prompt long enough to be counted on the counting thread. */
const LONG_FILLER = ' '.concat(
  Array.from({ length: 700 }, (_, i) => `word${i % 97} of a long question`).join(' '),
);

for (const [kind, filler] of [
  ['short prompts', ''],
  // Over lib/tokens/count-pool.ts INLINE_MAX_CHARS: each estimate is counted on the thread,
  // the requests of both tenants in flight together.
  ['long prompts, counted on the counting thread', LONG_FILLER],
] as const) {
  test(`interleaved requests of two tenants (${kind}): every upstream request carries its own body, headers and persona only`, async (t) => {
    // Limits lifted: the burst is the point here, not the free plan's rate limit.
    const door = await startKongYmlDoor(
      (fn) => t.teardown(fn),
      (p) => {
        // A loaded machine (CI beside other work) can hold a Redis reply past token-meter's 250 ms
        // deadline, and the meter then refuses (503 budget_unavailable), by design: not the point.
        if (p.name === 'token-meter' && p.config) {
          p.config.redis = { ...(p.config.redis as object), timeout_ms: 3000 };
          // The long prompts must not meet globex's monthly budget, shared with the run's others.
          const plans = (p.config.plans ?? {}) as Record<string, Record<string, unknown>>;
          for (const plan of Object.values(plans)) {
            delete plan.budget_usd;
            plan.budget_tokens = 1_000_000_000_000;
          }
        }
        if (p.name !== 'tenant-ratelimit' || !p.config) return;
        const lifted = { requests_per_minute: 100_000, request_burst: 10_000, max_concurrent: 64 };
        p.config.plans = { free: lifted, pro: lifted };
        p.config.tenants = {};
      },
    );
    const tenants = [
      { key: 'acme-demo-key', tenant: 'acme' },
      { key: 'globex-demo-key', tenant: 'globex' },
    ];
    const N = 24;
    const marker = (i: number) =>
      `scope-marker-${i}-${(tenants[i % 2] as { tenant: string }).tenant}`;
    const results = await Promise.all(
      Array.from({ length: N }, (_, i) => {
        const who = tenants[i % 2] as { key: string; tenant: string };
        return send(`${door.url}/v1/chat/completions`, {
          method: 'POST',
          headers: {
            apikey: who.key,
            'content-type': 'application/json',
            'x-test-marker': marker(i),
          },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            temperature: 0,
            messages: [{ role: 'user', content: `question ${marker(i)}${filler}` }],
          }),
        });
      }),
    );
    t.deepEqual(
      results.map((r) => r.status),
      Array(N).fill(200),
      results
        .filter((r) => r.status !== 200)
        .map((r) => `${r.status} ${r.text}`)
        .join('\n'),
    );
    const received = door.upstream.received.filter((r) =>
      String(r.headers['x-test-marker'] ?? '').startsWith('scope-marker-'),
    );
    // Positive control: every request reached the upstream once, so each check below ran.
    t.is(received.length, N);
    for (const r of received) {
      const mark = String(r.headers['x-test-marker']);
      const owner = mark.endsWith('-acme') ? 'acme' : 'globex';
      const body = r.rawBody.toString('utf8');
      t.is(r.headers['x-tenant-id'], owner, mark);
      const markers = body.match(/scope-marker-\d+-(acme|globex)/g) ?? [];
      t.deepEqual(markers, [mark], `${mark}: its own prompt, no other`);
      t.is(body.includes(PERSONA), owner === 'acme', `${mark}: the persona is acme's alone`);
    }
  });
}
