/**
 * tenant-cache's semantic cache end to end, through the gateway (harness, or the real Kong
 * with GATEWAY=kong), against the real Redis and the real Milvus, embeddings from the mock
 * upstream (feature hashing: questions sharing their words are near-duplicates).
 */
import test from 'ava';
import {
  SEM_THRESHOLD,
  askSem,
  metricAt,
  question,
  sharedSemanticDoor,
  tag,
} from '../helpers/semantic-door';

const door = sharedSemanticDoor(test);

const Q = 'what is the refund policy for annual plans in europe';
const NEAR = 'What is the refund policy for annual plans in Europe, please?';
const FAR = 'how do i rotate the api keys of my whole organisation today';

test.serial(
  'off by default: a near-duplicate on a route without it is an exact miss',
  async (t) => {
    const d = door();
    const id = tag();
    const first = await askSem(d, 'acme', 'ai', question(Q, id), { awaitSemanticStore: false });
    t.is(first.res.headers['x-cache-status'], 'MISS');
    const near = await askSem(d, 'acme', 'ai', question(NEAR, id), { awaitSemanticStore: false });
    t.is(near.res.headers['x-cache-status'], 'MISS');
    t.is(near.res.headers['x-cache-match'], undefined);
    t.truthy(near.upstream, 'answered by the upstream');
    // The exact repeat still hits.
    const again = await d.call('acme', '/ai/v1/chat/completions', { body: question(Q, id) });
    t.is(again.res.headers['x-cache-status'], 'HIT');
  },
);

test.serial('a near-duplicate question is answered from the tenant’s earlier answer', async (t) => {
  const d = door();
  const id = tag();
  const hitsBefore = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
    tenant: 'acme',
    outcome: 'hit',
  });
  const timedBefore = await metricAt(
    d.cacheMetricsUrl,
    'tenant_cache_semantic_lookup_seconds_count',
    {
      tenant: 'acme',
    },
  );
  const first = await askSem(d, 'acme', 'sem', question(Q, id));
  t.is(first.res.status, 200);
  t.is(first.res.headers['x-cache-status'], 'MISS');
  // The lookup that found nothing was timed (its embedding and its search).
  t.true(
    (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookup_seconds_count', {
      tenant: 'acme',
    })) > timedBefore,
  );
  t.truthy(first.upstream);
  t.is(
    (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', {
      tenant: 'acme',
      outcome: 'stored',
    })) > 0,
    true,
  );

  const near = await d.call('acme', '/sem/v1/chat/completions', { body: question(NEAR, id) });
  t.is(near.res.status, 200);
  t.is(near.res.headers['x-cache-status'], 'HIT');
  t.is(near.res.headers['x-cache-match'], 'semantic');
  t.truthy(near.res.headers.age);
  t.regex(String(near.res.headers['content-type']), /^application\/json/);
  t.is(near.upstream, undefined, 'the upstream was not called');
  t.deepEqual(near.res.json, first.res.json, 'the earlier answer, byte for byte');
  t.is(
    await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'acme',
      outcome: 'hit',
    }),
    hitsBefore + 1,
  );
  t.true(
    (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_similarity_bucket', {
      tenant: 'acme',
      le: '1',
    })) >= 1,
  );
  // The exact repeat is an exact hit (no X-Cache-Match).
  const exact = await d.call('acme', '/sem/v1/chat/completions', { body: question(Q, id) });
  t.is(exact.res.headers['x-cache-status'], 'HIT');
  t.is(exact.res.headers['x-cache-match'], undefined);
});

test.serial(
  'a different question of the same tenant is a miss (below the threshold)',
  async (t) => {
    const d = door();
    const id = tag();
    await askSem(d, 'acme', 'sem', question(Q, id));
    const below = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'acme',
      outcome: 'below_threshold',
    });
    const far = await askSem(d, 'acme', 'sem', question(FAR, id));
    t.is(far.res.headers['x-cache-status'], 'MISS');
    t.truthy(far.upstream);
    t.true(SEM_THRESHOLD > 0.5);
    t.is(
      await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
        tenant: 'acme',
        outcome: 'below_threshold',
      }),
      below + 1,
    );
  },
);

test.serial('the same question under another system prompt or model is a miss', async (t) => {
  const d = door();
  const id = tag();
  const base = question(Q, id);
  await askSem(d, 'acme', 'sem', base);
  const withSystem = {
    ...question(NEAR, id),
    messages: [
      { role: 'system', content: 'Answer as a pirate.' },
      { role: 'user', content: `${NEAR} ${id}` },
    ],
  };
  const sys = await askSem(d, 'acme', 'sem', withSystem);
  t.is(sys.res.headers['x-cache-status'], 'MISS');
  t.truthy(sys.upstream);
  const model = await askSem(d, 'acme', 'sem', question(NEAR, id, { model: 'gpt-4o' }));
  t.is(model.res.headers['x-cache-status'], 'MISS');
  t.truthy(model.upstream);
  const params = await askSem(d, 'acme', 'sem', question(NEAR, id, { max_tokens: 7 }));
  t.is(params.res.headers['x-cache-status'], 'MISS');
});

test.serial('plans without it (free) never use the semantic cache', async (t) => {
  const d = door();
  const id = tag();
  await askSem(d, 'initech', 'sem', question(Q, id), { awaitSemanticStore: false });
  const near = await askSem(d, 'initech', 'sem', question(NEAR, id), { awaitSemanticStore: false });
  t.is(near.res.headers['x-cache-status'], 'MISS');
  t.is(
    await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', { tenant: 'initech' }),
    0,
  );
});

test.serial('Milvus down: a miss with a metric, the answer comes from the upstream', async (t) => {
  const d = door();
  const id = tag();
  for (const body of [question(Q, id), question(NEAR, id)]) {
    const before = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'globex',
      outcome: 'unavailable',
    });
    const r = await askSem(d, 'globex', 'semdown', body);
    t.is(r.res.status, 200);
    t.is(r.res.headers['x-cache-status'], 'MISS');
    t.truthy(r.upstream, 'answered by the upstream');
    const after = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'globex',
      outcome: 'unavailable',
    });
    const timeouts = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'globex',
      outcome: 'timeout',
    });
    t.true(after > before || timeouts > 0);
  }
  t.true(
    (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', {
      tenant: 'globex',
      outcome: 'unavailable',
    })) +
      (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_stores_total', {
        tenant: 'globex',
        outcome: 'timeout',
      })) >=
      1,
  );
});

test.serial('a slow embeddings endpoint: the lookup deadline makes it a miss', async (t) => {
  const d = door();
  const id = tag();
  const before = await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
    tenant: 'hooli',
    outcome: 'timeout',
  });
  const r = await askSem(d, 'hooli', 'semslow', question(Q, id));
  t.is(r.res.status, 200);
  t.is(r.res.headers['x-cache-status'], 'MISS');
  t.truthy(r.upstream);
  t.is(
    await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
      tenant: 'hooli',
      outcome: 'timeout',
    }),
    before + 1,
  );
});
