/**
 * The ingest command (`npm run ingest`, dist/scripts/ingest.js) against the real Milvus and
 * Redis, embeddings from the mock upstream: ingest the example knowledge, re-ingest (replace),
 * offboard (verified), each change bumping the tenant's knowledge generation.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import test from 'ava';
import { ConsistencyLevelEnum } from '@zilliz/milvus2-sdk-node';
import { closeAllRedis } from '../../lib/redis/client';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { startMockUpstream } from '../../mock-upstream/index';
import { ROOT } from '../helpers/frontdoor';
import {
  MILVUS_ADDRESS,
  REDIS_URL,
  connectMilvus,
  connectRedis,
  deleteKeyspace,
  randomKeyspace,
} from './services';

test.after.always(closeAllRedis);

function ingest(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'dist', 'scripts', 'ingest.js'), ...args],
      { env: { ...process.env, ...env }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('ingest, re-ingest and offboard a tenant with the command', async (t) => {
  const milvus = await connectMilvus();
  const collection = `kta_it_cli_${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    await milvus.dropCollection({ collection_name: collection });
    milvus.closeConnection();
  });
  const upstream = await startMockUpstream();
  t.teardown(() => upstream.close());
  const redis = await connectRedis();
  const keyspace = randomKeyspace();
  t.teardown(() => deleteKeyspace(redis, keyspace));

  const env = { KTA_KNOWLEDGE_SECRET: randomBytes(32).toString('hex') };
  const common = [
    '--milvus',
    MILVUS_ADDRESS,
    '--redis-url',
    REDIS_URL,
    '--collection',
    collection,
    '--key-namespace',
    keyspace.namespace,
    '--embeddings-url',
    `${upstream.url}/v1/embeddings`,
    '--tenant',
    'acme',
  ];
  const files = ['returns.md', 'shipping.md'].map((f) =>
    path.join(ROOT, 'examples', 'knowledge', 'acme', f),
  );
  const first = await ingest(
    [...common, ...files, '--chunk-size', '200', '--chunk-overlap', '20'],
    env,
  );
  t.is(first.code, 0, first.stderr);
  const chunks = Number(/: (\d+) chunk\(s\)/.exec(first.stdout)?.[1]);
  t.true(chunks > 2, first.stdout);
  t.regex(first.stdout, /knowledge generation 1/);

  const again = await ingest(
    [...common, ...files, '--chunk-size', '200', '--chunk-overlap', '20'],
    env,
  );
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /knowledge generation 2/);
  const count = await milvus.query({
    collection_name: collection,
    filter: 'tenant_id == "acme"',
    output_fields: ['count(*)'],
    consistency_level: ConsistencyLevelEnum.Strong,
  });
  t.is(Number(count.data[0]?.['count(*)']), chunks, 're-ingesting replaces, never duplicates');

  const off = await ingest([...common, '--offboard'], env);
  t.is(off.code, 0, off.stderr);
  t.regex(off.stdout, /offboarded acme: 0 chunks left/);
  t.is(await redis.get(keyspace.knowledgeGeneration(parseTenantId('acme'))), '3');

  const bad = await ingest([...common.slice(0, -2), '--tenant', 'Acme"||1', ...files], env);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--tenant: invalid tenant id/);
  const noSecret = await ingest([...common, ...files], { KTA_KNOWLEDGE_SECRET: '' });
  t.is(noSecret.code, 1);
  t.regex(noSecret.stderr, /knowledge secret/);
});
