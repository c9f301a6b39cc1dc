/**
 * Adversarial isolation cases for tenant-cache's semantic cache: tenant B trying to be
 * answered with tenant A's earlier answers through similar questions, planted Milvus rows,
 * other tool grants, and A's purge. Through the gateway (harness or real Kong), against the
 * real Redis and Milvus.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ConsistencyLevelEnum } from '@zilliz/milvus2-sdk-node';
import { TENANT_COLLECTION_FIELDS as F } from '../../lib/milvus/client';
import { ROOT } from '../helpers/frontdoor';
import {
  askSem,
  metricAt,
  question,
  sharedSemanticDoor,
  tag,
  type SemanticDoor,
} from '../helpers/semantic-door';
import { MILVUS_ADDRESS, REDIS_URL } from '../integration/services';

const door = sharedSemanticDoor(test);

const Q = 'which discount did we negotiate with our largest supplier last quarter';
const NEAR = 'Which discount did we negotiate with our largest supplier last quarter?';

interface Row {
  id: string;
  tenant_id: string;
  text: string;
  scope: string;
  expires_at: number;
  embedding: number[];
}

async function rowsOf(d: SemanticDoor, tenant: string): Promise<Row[]> {
  const res = await d.milvus.query({
    collection_name: d.collection,
    filter: `${F.tenantId} == "${tenant}"`,
    output_fields: [F.id, F.tenantId, F.text, '$meta', F.embedding],
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  return res.data.map((r) => ({
    id: String(r[F.id]),
    tenant_id: String(r[F.tenantId]),
    text: String(r[F.text]),
    // Query (unlike search) returns the dynamic fields as one `$meta` object in SDK 2.3.5.
    scope: String(r.scope ?? (r.$meta as Record<string, unknown> | undefined)?.scope),
    expires_at: Number(
      r.expires_at ?? (r.$meta as Record<string, unknown> | undefined)?.expires_at,
    ),
    embedding: r[F.embedding] as number[],
  }));
}

const answerId = (r: { res: { json: unknown } }) => (r.res.json as { id: string }).id;

test.serial('A and B ask near-identical questions: B never gets A’s answer', async (t) => {
  const d = door();
  const id = tag();
  const a1 = await askSem(d, 'acme', 'sem', question(Q, id));
  t.is(a1.res.headers['x-cache-status'], 'MISS');
  const a2 = await d.call('acme', '/sem/v1/chat/completions', { body: question(NEAR, id) });
  t.is(a2.res.headers['x-cache-match'], 'semantic', 'A’s own near-duplicate hits');

  for (const body of [question(Q, id), question(NEAR, id)]) {
    const b = await askSem(d, 'globex', 'sem', body);
    t.not(answerId(b), answerId(a1), 'never A’s answer');
    if (b.res.headers['x-cache-status'] !== 'HIT') {
      t.is(b.upstream?.headers['x-tenant-id'], 'globex');
    }
  }
  // B's second question hit B's own first answer at most.
  const rows = await rowsOf(d, 'globex');
  t.true(rows.length >= 1);
  t.true(rows.every((r) => r.tenant_id === 'globex'));
  // Nothing of B's is in A's partition, nothing of A's in B's.
  t.true((await rowsOf(d, 'acme')).every((r) => r.tenant_id === 'acme'));
});

for (const [victim, owner] of [
  ['globex', 'acme'],
  ['acme', 'globex'],
] as const) {
  test.serial(
    `a row of ${owner} planted in ${victim}’s partition under ${victim}’s scope is not served: an alarm, a miss`,
    async (t) => {
      const d = door();
      const id = tag();
      const o = await askSem(d, owner, 'sem', question(Q, id));
      const v = await askSem(d, victim, 'sem', question(Q, id));
      t.not(answerId(o), answerId(v));
      const ownerRows = await rowsOf(d, owner);
      const ownerRow = ownerRows.find((r) => r.scope.length === 64);
      const victimRows = await rowsOf(d, victim);
      const victimRow = victimRows[victimRows.length - 1];
      if (!ownerRow || !victimRow) throw new Error('rows missing');
      // Someone with write access to Milvus replaces the victim's rows by a copy of the
      // owner's sealed answer, labelled as the victim's (partition key, scope, expiry, vector).
      await d.milvus.deleteEntities({
        collection_name: d.collection,
        filter: `${F.id} in [${victimRows.map((r) => r.id).join(',')}]`,
      });
      await d.milvus.insert({
        collection_name: d.collection,
        data: [
          {
            [F.tenantId]: victim,
            [F.text]: ownerRow.text,
            [F.embedding]: victimRow.embedding,
            scope: victimRow.scope,
            expires_at: victimRow.expires_at,
          },
        ],
      });
      const alarms = await metricAt(d.cacheMetricsUrl, 'tenant_cache_decrypt_alarms_total', {
        tenant: victim,
      });
      // A near-duplicate (the exact entry in Redis would answer the identical question).
      const r = await askSem(d, victim, 'sem', question(NEAR, id));
      t.is(r.res.status, 200);
      t.is(r.res.headers['x-cache-status'], 'MISS');
      t.is(r.upstream?.headers['x-tenant-id'], victim, 'answered by the upstream for the victim');
      t.not(answerId(r), answerId(o));
      t.is(
        await metricAt(d.cacheMetricsUrl, 'tenant_cache_decrypt_alarms_total', { tenant: victim }),
        alarms + 1,
      );
      t.true(
        (await metricAt(d.cacheMetricsUrl, 'tenant_cache_semantic_lookups_total', {
          tenant: victim,
          outcome: 'alarm',
        })) >= 1,
      );
    },
  );
}

test.serial('B with other tool grants never gets A’s cached tool-call answer', async (t) => {
  const d = door();
  const id = tag();
  const tools = ['search', 'calculator'].map((name) => ({
    type: 'function',
    function: { name, parameters: { type: 'object' } },
  }));
  const a = await askSem(d, 'acme', 'sem', question(Q, id, { tools, tool_choice: 'auto' }));
  const a2 = await d.call('acme', '/sem/v1/chat/completions', {
    body: question(NEAR, id, { tools, tool_choice: 'auto' }),
  });
  t.is(a2.res.headers['x-cache-match'], 'semantic');
  // hooli: plan pro too; its request offers only `search` (its grant): another scope.
  const h = await askSem(
    d,
    'hooli',
    'sem',
    question(NEAR, id, { tools: tools.slice(0, 1), tool_choice: 'auto' }),
  );
  t.is(h.res.headers['x-cache-status'], 'MISS');
  t.not(answerId(h), answerId(a));
  t.is(h.upstream?.headers['x-tenant-id'], 'hooli');
  // The same bytes as A's from hooli: still its own miss, never A's answer.
  const same = await askSem(
    d,
    'hooli',
    'sem',
    question(NEAR, `${id} again`, { tools, tool_choice: 'auto' }),
  );
  t.not(answerId(same), answerId(a));
});

test.serial(
  'purge of A: A’s near-duplicates miss at once, B keeps its semantic hits',
  async (t) => {
    const d = door();
    const id = tag();
    await askSem(d, 'acme', 'sem', question(Q, id));
    await askSem(d, 'globex', 'sem', question(Q, id));
    t.is(
      (await d.call('acme', '/sem/v1/chat/completions', { body: question(NEAR, id) })).res.headers[
        'x-cache-match'
      ],
      'semantic',
    );
    t.true((await rowsOf(d, 'acme')).length > 0);
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
        '--milvus',
        MILVUS_ADDRESS,
        '--semantic-collection',
        d.collection,
      ],
      { cwd: ROOT, encoding: 'utf8' },
    );
    t.regex(out, /purged the cache of tenant acme/);
    t.regex(out, /deleted the semantic-cache rows of acme/);
    t.is((await rowsOf(d, 'acme')).length, 0);
    const a = await askSem(d, 'acme', 'sem', question(NEAR, `${id}`));
    t.is(a.res.headers['x-cache-status'], 'MISS');
    t.truthy(a.upstream);
    const b = await d.call('globex', '/sem/v1/chat/completions', { body: question(NEAR, id) });
    t.is(b.res.headers['x-cache-status'], 'HIT');
    t.is(b.res.headers['x-cache-match'], 'semantic');
    t.true((await rowsOf(d, 'globex')).length > 0);
  },
);
