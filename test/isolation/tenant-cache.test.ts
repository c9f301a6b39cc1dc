/**
 * Adversarial isolation cases for tenant-cache: tenant B trying to be answered with tenant A's
 * cached data. Through the gateway (harness or real Kong), against the real Redis.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../helpers/frontdoor';
import { REDIS_URL } from '../integration/services';
import {
  apikey,
  detChat,
  eventually,
  metric,
  sharedCacheDoor,
  type CacheDoor,
} from '../helpers/cache-door';

const door = sharedCacheDoor(test);

/**
 * Sends as `tenant` on /v1 chat; when it was a miss, waits until log has stored (or decided
 * not to); returns the response and the tenant's entries that appeared meanwhile.
 */
async function ask(d: CacheDoor, tenant: string, body: unknown) {
  const before = new Set(await d.entries(tenant));
  const stores = await metric(d, 'tenant_cache_stores_total', { tenant });
  const r = await d.call('/v1/chat/completions', {
    headers: apikey(`${tenant}-key`),
    body: body as object,
  });
  if (r.res.headers['x-cache-status'] === 'MISS') {
    await eventually(
      `the store of ${tenant}`,
      async () => (await metric(d, 'tenant_cache_stores_total', { tenant })) > stores,
    );
  }
  const added = (await d.entries(tenant)).filter((k) => !before.has(k));
  return { ...r, added };
}

const content = (r: { res: { json: unknown } }) =>
  (r.res.json as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content;

test.serial(
  'A and B send the identical prompt: B is a miss answered by the upstream for B',
  async (t) => {
    const d = door();
    const body = detChat('the secret roadmap');
    const a1 = await ask(d, 'acme', body);
    t.is(a1.res.headers['x-cache-status'], 'MISS');
    t.is((await ask(d, 'acme', body)).res.headers['x-cache-status'], 'HIT');

    const b1 = await ask(d, 'globex', body);
    t.is(b1.res.headers['x-cache-status'], 'MISS', 'B never hits A’s entry');
    t.is(b1.upstream?.headers['x-tenant-id'], 'globex');
    t.not(a1.added[0], b1.added[0]);
    t.true(a1.added[0]?.includes('{t:acme}'));
    t.true(b1.added[0]?.includes('{t:globex}'));
    // The names are per-tenant HMACs: nothing links the two entries.
    t.not(a1.added[0]?.split(':').pop(), b1.added[0]?.split(':').pop());
  },
);

test.serial('crafted tenant ids never reach the cache', async (t) => {
  const d = door();
  const body = detChat('crafted');
  await ask(d, 'acme', body);
  // These consumers map to ids tenant-auth refuses: no TenantContext, no cache read.
  const before = await d.entries('acme');
  for (const key of ['upper-key', 'hashtag-key', 'colon-key']) {
    const r = await d.call('/v1/chat/completions', { headers: apikey(key), body });
    t.is(r.res.status, 403, key);
    t.not(r.res.headers['x-cache-status'], 'HIT');
    t.is(r.upstream, undefined);
  }
  t.deepEqual((await d.entries('acme')).sort(), before.sort());
});

test.serial(
  'JSON tricks that canonicalise to A’s request stay B’s: key order, escapes, duplicates',
  async (t) => {
    const d = door();
    const prompt = `tricks ${randomUUID()}`;
    // umbrella and hooli's peer: use two tenants whose plans forward bytes unchanged
    // (umbrella, plan open) and one that rewrites (globex, plan pro).
    const a = {
      model: 'gpt-4o-mini',
      temperature: 0,
      messages: [{ role: 'user', content: prompt }],
    };
    await ask(d, 'acme', a);
    t.is((await ask(d, 'acme', a)).res.headers['x-cache-status'], 'HIT');

    const escaped = prompt.replace(/[a-z]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
    const tricks = [
      `{"messages":[{"content":"${prompt}","role":"user"}],"temperature":0,"model":"gpt-4o-mini"}`,
      `{"model":"gpt-4o-mini","temperature":0.0,"messages":[{"role":"user","content":"${escaped}"}]}`,
      // A duplicate that would parse to A's body with last-wins.
      `{"model":"gpt-4o-mini","temperature":0,"messages":[],"messages":[{"role":"user","content":"${prompt}"}]}`,
    ];
    const aAnswer = (await ask(d, 'acme', a)).res.json as { id: string };
    for (const tenant of ['globex', 'umbrella']) {
      let first = true;
      for (const raw of tricks) {
        const r = await d.call('/v1/chat/completions', {
          headers: [...apikey(`${tenant}-key`), ['content-type', 'application/json']],
          body: raw,
        });
        t.is(r.res.status, 200);
        if (first) {
          t.is(r.res.headers['x-cache-status'], 'MISS', `${tenant}: ${raw}`);
          t.is(r.upstream?.headers['x-tenant-id'], tenant);
          first = false;
        }
        // A later spelling may hit the tenant's own entry, never A's answer.
        t.not((r.res.json as { id: string }).id, aAnswer.id, `${tenant}: ${raw}`);
      }
    }
    // umbrella's plan forwards the client's bytes: its duplicate-key spelling bypassed the cache.
    t.true(
      (await metric(d, 'tenant_cache_requests_total', {
        tenant: 'umbrella',
        reason: 'duplicate_keys',
      })) >= 1,
    );
  },
);

test.serial(
  'A’s entry copied under B’s key fails to decrypt: an alarm, a miss, B’s own answer',
  async (t) => {
    const d = door();
    const body = detChat('planted');
    const a = await ask(d, 'acme', body);
    const b = await ask(d, 'globex', body);
    const aKey = a.added[0] as string;
    const bKey = b.added[0] as string;
    t.truthy(aKey);
    t.truthy(bKey);
    t.is((await ask(d, 'globex', body)).res.headers['x-cache-status'], 'HIT');

    // An attacker with write access to Redis plants A's value under B's key (the clear
    // generations prefix matches: both are 0).
    const aValue = await d.redis.get(aKey);
    t.truthy(aValue);
    const ttl = await d.redis.ttl(bKey);
    await d.redis.set(bKey, aValue as string, {
      expiration: { type: 'EX', value: Math.max(ttl, 60) },
    });
    const alarmsBefore = await metric(d, 'tenant_cache_decrypt_alarms_total', { tenant: 'globex' });

    const r = await d.call('/v1/chat/completions', { headers: apikey('globex-key'), body });
    t.is(r.res.status, 200);
    t.is(r.res.headers['x-cache-status'], 'MISS');
    t.is(r.upstream?.headers['x-tenant-id'], 'globex', 'B is answered by the upstream');
    t.not(r.res.text, JSON.stringify(a.res.json));
    t.is(
      await metric(d, 'tenant_cache_decrypt_alarms_total', { tenant: 'globex' }),
      alarmsBefore + 1,
    );

    // A's digest under B's hash tag (the "guessed key"): B's lookups never name it, and its
    // value would not open for B anyway.
    const guessed = aKey.replace('{t:acme}', '{t:globex}');
    await d.redis.set(guessed, aValue as string, { expiration: { type: 'EX', value: 60 } });
    const again = await d.call('/v1/chat/completions', {
      headers: apikey('globex-key'),
      body: detChat('planted'),
    });
    t.not(again.res.headers['x-cache-status'], 'HIT');

    // A plaintext value planted under B's key is not served either.
    await d.redis.set(bKey, `tc1.x.0.0.${Buffer.from('{"b":"evil"}').toString('base64')}`, {
      expiration: { type: 'EX', value: 60 },
    });
    const plain = await d.call('/v1/chat/completions', { headers: apikey('globex-key'), body });
    t.not(plain.res.headers['x-cache-status'], 'HIT');
    t.false(plain.res.text.includes('evil'));
  },
);

test.serial('different tool grants never get another tenant’s cached tool call', async (t) => {
  const d = door();
  const tools = ['search', 'calculator'].map((name) => ({
    type: 'function',
    function: { name, parameters: { type: 'object' } },
  }));
  const body = detChat('use a tool', { tools, tool_choice: 'auto' });
  // globex (pro: search + calculator) caches a request offering both tools.
  const g = await ask(d, 'globex', body);
  t.is(g.res.headers['x-cache-status'], 'MISS');
  t.is((await ask(d, 'globex', body)).res.headers['x-cache-status'], 'HIT');
  // hooli (pro, but granted only search) sends the same bytes: tenant-auth strips calculator,
  // and the cache key holds hooli and its grants: a miss, the upstream sees one tool.
  const h = await ask(d, 'hooli', body);
  t.is(h.res.headers['x-cache-status'], 'MISS');
  const sent = (h.upstream?.json as { tools: Array<{ function: { name: string } }> }).tools;
  t.deepEqual(
    sent.map((x) => x.function.name),
    ['search'],
  );
});

test.serial('a knowledge generation bump makes A’s entries misses; B is untouched', async (t) => {
  const d = door();
  const body = detChat('knowledge');
  await ask(d, 'acme', body);
  await ask(d, 'globex', body);
  t.is((await ask(d, 'acme', body)).res.headers['x-cache-status'], 'HIT');
  await d.redis.incr(d.keyspace.knowledgeGeneration(parseTenantId('acme')));
  const a = await ask(d, 'acme', body);
  t.is(a.res.headers['x-cache-status'], 'MISS', 'an answer built on the old corpus is not served');
  t.is((await ask(d, 'globex', body)).res.headers['x-cache-status'], 'HIT');
  t.is(
    (await ask(d, 'acme', body)).res.headers['x-cache-status'],
    'HIT',
    'the new generation caches',
  );
});

test.serial('purge of A: every A entry is a miss at once, B keeps its entries', async (t) => {
  const d = door();
  const bodies = [detChat('purge one'), detChat('purge two')];
  for (const b of bodies) {
    await ask(d, 'acme', b);
    await ask(d, 'globex', b);
  }
  for (const b of bodies) t.is((await ask(d, 'acme', b)).res.headers['x-cache-status'], 'HIT');
  // The operator command, as documented.
  const out = execFileSync(
    path.join(ROOT, 'node_modules', '.bin', 'tsx'),
    [
      'scripts/cache-purge.ts',
      '--tenant',
      'acme',
      '--namespace',
      d.keyspace.namespace,
      '--redis',
      REDIS_URL,
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  t.regex(out, /^purged the cache of tenant acme/);
  for (const b of bodies) {
    t.is((await ask(d, 'acme', b)).res.headers['x-cache-status'], 'MISS');
    t.is((await ask(d, 'globex', b)).res.headers['x-cache-status'], 'HIT');
  }
  const gen = await d.redis.ttl(d.keyspace.cacheGeneration(parseTenantId('acme')));
  t.true(gen > 7 * 24 * 3600, 'the purge generation outlives every entry');
});

test.serial('A’s cached answer content never appears in B’s responses', async (t) => {
  const d = door();
  const body = detChat('content check');
  const a = await ask(d, 'acme', body);
  const b = await ask(d, 'globex', body);
  // The mock quotes the (persona-shaped) question; what matters is who answered: each
  // upstream record carries its tenant, and B's answer came from B's request.
  t.is(b.upstream?.headers['x-tenant-id'], 'globex');
  t.is(a.upstream?.headers['x-tenant-id'], 'acme');
  t.not((b.res.json as { id: string }).id, (a.res.json as { id: string }).id);
  t.truthy(content(b));
});
