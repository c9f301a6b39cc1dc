/**
 * The shared, partition-keyed tenant collection on the real Milvus at MILVUS_ADDRESS: the
 * `tenant_id` filter is what keeps one tenant's search away from another tenant's rows.
 * Every collection is uniquely named per run and dropped in teardown.
 */
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import {
  ConsistencyLevelEnum,
  DataType,
  ErrorCode,
  type MilvusClient,
} from '@zilliz/milvus2-sdk-node';
import {
  createMilvus,
  ensureTenantCollection,
  MilvusOperationError,
  MilvusUnavailableError,
  TENANT_COLLECTION_FIELDS as F,
  type TenantCollectionSpec,
} from '../../lib/milvus/client';
import { tenantFilter } from '../../lib/milvus/tenant-filter';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { freePort } from './private-redis';
import { connectMilvus } from './services';

const tenantA = parseTenantId('tenant-a');
const tenantB = parseTenantId('tenant-b');
const query = [1, 0, 0, 0];

async function milvus(t: ExecutionContext): Promise<MilvusClient> {
  const client = await connectMilvus();
  t.teardown(() => {
    client.closeConnection();
  });
  return client;
}

function uniqueName(t: ExecutionContext, client: MilvusClient, prefix: string): string {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  t.teardown(async () => {
    await client.dropCollection({ collection_name: name });
  });
  return name;
}

async function searchTexts(
  client: MilvusClient,
  spec: TenantCollectionSpec,
  filter: string | undefined,
): Promise<string[]> {
  const res = await client.search({
    collection_name: spec.name,
    vector: query,
    limit: 2,
    metric_type: spec.metricType,
    output_fields: [F.text, F.tenantId],
    consistency_level: ConsistencyLevelEnum.Strong,
    ...(filter === undefined ? {} : { filter }),
  });
  if (res.status.error_code !== ErrorCode.SUCCESS) throw new Error(res.status.reason);
  return res.results.map((r) => `${String(r[F.tenantId])}:${String(r[F.text])}`);
}

test('a tenant filter returns only that tenant, even when others are nearer', async (t) => {
  const client = await milvus(t);
  const spec: TenantCollectionSpec = {
    name: uniqueName(t, client, 'kta_it_chunks'),
    dim: 4,
    numPartitions: 16,
    metricType: 'L2',
  };
  await ensureTenantCollection(client, spec);

  // Tenant B's rows sit right on the query; tenant A's are far from it.
  const rows = [
    { [F.tenantId]: tenantB, [F.text]: 'b-exact', [F.embedding]: [1, 0, 0, 0] },
    { [F.tenantId]: tenantB, [F.text]: 'b-near', [F.embedding]: [0.9, 0.1, 0, 0] },
    { [F.tenantId]: tenantA, [F.text]: 'a-far', [F.embedding]: [0, 1, 0, 0] },
    { [F.tenantId]: tenantA, [F.text]: 'a-farther', [F.embedding]: [0, 0, 1, 1] },
  ];
  const inserted = await client.insert({ collection_name: spec.name, data: rows });
  t.is(inserted.status.error_code, ErrorCode.SUCCESS, inserted.status.reason);

  // Without the filter, B's rows win: the filter is what excludes them below.
  t.deepEqual(await searchTexts(client, spec, undefined), ['tenant-b:b-exact', 'tenant-b:b-near']);
  t.deepEqual(await searchTexts(client, spec, tenantFilter(tenantA)), [
    'tenant-a:a-far',
    'tenant-a:a-farther',
  ]);
  t.deepEqual(await searchTexts(client, spec, tenantFilter(tenantB)), [
    'tenant-b:b-exact',
    'tenant-b:b-near',
  ]);
  t.deepEqual(await searchTexts(client, spec, tenantFilter(parseTenantId('nobody'))), []);
});

test('inserts describe the collection once, not once per insert', async (t) => {
  const client = await milvus(t);
  const spec: TenantCollectionSpec = {
    name: uniqueName(t, client, 'kta_it_describe'),
    dim: 4,
    numPartitions: 4,
    metricType: 'L2',
  };
  await ensureTenantCollection(client, spec);
  // The SDK sends each RPC through its gRPC client's method of that name (utils/Function.js).
  const grpc = (client as unknown as { client: Record<string, (...a: unknown[]) => unknown> })
    .client;
  const describe = grpc.DescribeCollection as (...a: unknown[]) => unknown;
  let described = 0;
  grpc.DescribeCollection = (...a: unknown[]) => {
    described++;
    return describe.apply(grpc, a);
  };
  t.teardown(() => {
    grpc.DescribeCollection = describe;
  });
  for (let i = 0; i < 3; i++) {
    const res = await client.insert({
      collection_name: spec.name,
      data: [{ [F.tenantId]: tenantA, [F.text]: `row ${i}`, [F.embedding]: [i, 1, 0, 0] }],
    });
    t.is(res.status.error_code, ErrorCode.SUCCESS, res.status.reason);
  }
  t.true(described <= 1, `${described} DescribeCollection calls for 3 inserts`);
  // A schema check still asks Milvus itself.
  const beforeCheck = described;
  await ensureTenantCollection(client, spec);
  t.true(described > beforeCheck);
});

test('ensureTenantCollection is idempotent and builds the partition-key schema', async (t) => {
  const client = await milvus(t);
  const spec: TenantCollectionSpec = {
    name: uniqueName(t, client, 'kta_it_schema'),
    dim: 8,
    numPartitions: 4,
    metricType: 'COSINE',
  };
  await ensureTenantCollection(client, spec);
  await ensureTenantCollection(client, spec);

  const desc = await client.describeCollection({ collection_name: spec.name });
  const byName = new Map(desc.schema.fields.map((f) => [f.name, f]));
  t.true(byName.get(F.tenantId)?.is_partition_key);
  t.is(byName.get(F.tenantId)?.data_type, 'VarChar');
  t.true(byName.get(F.id)?.is_primary_key);
  t.is(byName.get(F.embedding)?.data_type, 'FloatVector');
  t.is(Number(desc.num_partitions), 4);

  const index = await client.describeIndex({ collection_name: spec.name, field_name: F.embedding });
  const params = new Map(index.index_descriptions[0]?.params.map((p) => [p.key, p.value]));
  // FLAT by default: exact search within the tenant's partition (HNSW misses rows under the
  // tenant filter on Milvus 2.3, see test/integration/retrieval-recall.test.ts).
  t.is(params.get('index_type'), 'FLAT');
  t.is(params.get('metric_type'), 'COSINE');

  // The same collection asked for with another metric or dimension is refused, not reused.
  await t.throwsAsync(ensureTenantCollection(client, { ...spec, metricType: 'L2' }), {
    instanceOf: MilvusOperationError,
  });
  await t.throwsAsync(ensureTenantCollection(client, { ...spec, dim: 16 }), {
    instanceOf: MilvusOperationError,
  });
});

test('an existing collection indexed with another type gets its index rebuilt, rows kept', async (t) => {
  const client = await milvus(t);
  const spec: TenantCollectionSpec = {
    name: uniqueName(t, client, 'kta_it_reindex'),
    dim: 4,
    numPartitions: 4,
    metricType: 'COSINE',
    indexType: 'HNSW',
  };
  await ensureTenantCollection(client, spec);
  const inserted = await client.insert({
    collection_name: spec.name,
    data: [{ [F.tenantId]: 'acme', [F.text]: 'kept', [F.embedding]: [1, 0, 0, 0] }],
  });
  t.is(inserted.status.error_code, ErrorCode.SUCCESS, inserted.status.reason);
  const indexType = async () => {
    const index = await client.describeIndex({
      collection_name: spec.name,
      field_name: F.embedding,
    });
    return index.index_descriptions[0]?.params.find((p) => p.key === 'index_type')?.value;
  };
  t.is(await indexType(), 'HNSW');

  await ensureTenantCollection(client, { ...spec, indexType: 'FLAT' });
  t.is(await indexType(), 'FLAT');
  t.deepEqual(
    await searchTexts(client, { ...spec, indexType: 'FLAT' }, tenantFilter(parseTenantId('acme'))),
    ['acme:kept'],
  );
});

test('an existing collection without the tenant partition key is refused', async (t) => {
  const client = await milvus(t);
  const name = uniqueName(t, client, 'kta_it_plain');
  const created = await client.createCollection({
    collection_name: name,
    fields: [
      { name: F.id, data_type: DataType.Int64, is_primary_key: true, autoID: true },
      { name: F.tenantId, data_type: DataType.VarChar, max_length: 64 },
      { name: F.text, data_type: DataType.VarChar, max_length: 256 },
      { name: F.embedding, data_type: DataType.FloatVector, dim: 4 },
    ],
  });
  t.is(created.error_code, ErrorCode.SUCCESS, created.reason);

  await t.throwsAsync(
    ensureTenantCollection(client, { name, dim: 4, numPartitions: 16, metricType: 'L2' }),
    { instanceOf: MilvusOperationError, message: /not its partition key/ },
  );
});

test('createMilvus fails with MilvusUnavailableError when nothing listens', async (t) => {
  const address = `127.0.0.1:${await freePort()}`;
  await t.throwsAsync(createMilvus({ address, timeoutMs: 2000 }), {
    instanceOf: MilvusUnavailableError,
    message: new RegExp(address),
  });
});
