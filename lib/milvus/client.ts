/**
 * Milvus access for the plugins: a client factory and the shared, partition-keyed collection
 * that holds every tenant's knowledge.
 *
 * Tenancy model (see docs/services.md and shared milvus-facts): ONE collection for all
 * tenants, with a VarChar `tenant_id` field declared `is_partition_key`, so Milvus buckets
 * tenants into `numPartitions` hash partitions and a `tenant_id == "<id>"` filter both prunes
 * to one partition and filters inside it. This module deliberately offers no search
 * function: searching belongs to code that holds a TenantContext (retrieval plugin).
 */
import { DataType, ErrorCode, MilvusClient, type FieldType } from '@zilliz/milvus2-sdk-node';
import { MILVUS_RECONNECT_BACKOFF } from './reconnect';

export interface MilvusOptions {
  /** `host:port`, e.g. `127.0.0.1:19530`. */
  readonly address: string;
  /** Deadline per RPC; default 5000 ms. */
  readonly timeoutMs?: number;
  /** The SDK's own logging (winston levels); default `warn` (the SDK defaults to `debug`). */
  readonly logLevel?: 'error' | 'warn' | 'info' | 'debug';
}

export const DEFAULT_MILVUS_TIMEOUT_MS = 5000;

export class MilvusUnavailableError extends Error {
  override readonly name = 'MilvusUnavailableError';
}

/**
 * A connected client. Async on purpose: the SDK (2.3.5) starts connecting in its constructor
 * and keeps that promise; if it rejected, the rejection would be unhandled (fatal in Node 20)
 * and the client would stay broken, since `createCollection` re-awaits the failed promise on
 * every call. So: wait for the connection here, and on failure close the client and throw;
 * the caller retries with a new one.
 */
export async function createMilvus(opts: MilvusOptions): Promise<MilvusClient> {
  const timeout = opts.timeoutMs ?? DEFAULT_MILVUS_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new RangeError(`timeoutMs must be a positive number, got ${timeout}`);
  }
  const client = new MilvusClient({
    address: opts.address,
    timeout,
    logLevel: opts.logLevel ?? 'warn',
    channelOptions: { ...MILVUS_RECONNECT_BACKOFF },
  });
  try {
    await client.connectPromise;
  } catch (err) {
    client.closeConnection();
    const reason = err instanceof Error ? err.message : String(err);
    throw new MilvusUnavailableError(`Milvus at ${opts.address} not reachable: ${reason}`);
  }
  describeFromCache(client);
  return client;
}

/**
 * SDK 2.3.5's `insert` (grpc/Data.js `_insert`) describes the collection on every call, without
 * the client's cache, only to order the fields it sends: one more gRPC round trip, and Milvus's
 * work, for every insert (the semantic cache stores one per cacheable miss; ingestion one per
 * batch). `search` already asks with `cache: true`. Here a description asked without saying
 * `cache` comes from the client's cache (the SDK's own LRU, filled by the first call and cleared
 * by `dropCollection` through this client); one that says `cache: false` goes to Milvus, as the
 * schema check of `ensureTenantCollection` does. A collection dropped and made again by someone
 * else with another schema then fails its inserts at Milvus, as it failed its searches before.
 */
function describeFromCache(client: MilvusClient): void {
  const describe = client.describeCollection.bind(client);
  client.describeCollection = (data) => describe({ ...data, cache: data.cache ?? true });
}

/** Field names of the tenant collection; the retrieval plugin reads these. */
export const TENANT_COLLECTION_FIELDS = {
  id: 'id',
  tenantId: 'tenant_id',
  text: 'text',
  embedding: 'embedding',
} as const;

export type VectorMetric = 'L2' | 'IP' | 'COSINE';

/**
 * The vector index of the tenant collection.
 * - `FLAT` (default): exact search. With the partition key, a search scans only the rows of
 *   the tenant's hash partition (total rows / `numPartitions`), so exact is also fast enough:
 *   3,200 rows × dim 64 per search at 1,000 tenants × 200 chunks over 64 partitions.
 * - `HNSW` (M 16, efConstruction 200): approximate. Measured on Milvus 2.3.5 with the
 *   tenant filter (bench/retrieval-injector.ts): where a tenant holds a small share of its
 *   partition's rows, the filtered graph search returns too few hits, often none (5% of
 *   searches at 1,000 × 200 returned nothing; raising `ef` does not help). Use it only where
 *   partitions hold few tenants, or with Milvus 2.4.6+ `partitionkey.isolation`.
 */
export type VectorIndexType = 'FLAT' | 'HNSW';
export const DEFAULT_INDEX_TYPE: VectorIndexType = 'FLAT';

export interface TenantCollectionSpec {
  readonly name: string;
  /** Embedding dimension. */
  readonly dim: number;
  /** Hash partitions tenants are spread over (Milvus: 1..4096; default there 16). */
  readonly numPartitions: number;
  /** The distance the index is built for; every search must pass the same `metric_type`. */
  readonly metricType: VectorMetric;
  /**
   * Index of the vector field; default FLAT (exact). An existing collection indexed
   * otherwise gets its index rebuilt (an index is derived data; rows are untouched).
   */
  readonly indexType?: VectorIndexType;
  /** Longest chunk text in bytes; default 8192 (Milvus caps VarChar at 65535). */
  readonly textMaxLength?: number;
  /**
   * The embedding model whose vectors the collection holds. Recorded with the collection (its
   * description, with the dimension) when it is created; an existing collection recorded for
   * another model, or for none, is refused: vectors of two models are not comparable, and a
   * search across them returns confident nonsense.
   */
  readonly embeddingModel?: string;
}

/** What a collection records about its vectors (JSON in the collection description). */
export interface EmbeddingRecord {
  readonly embedding_model: string;
  readonly dim: number;
}

export function embeddingRecord(spec: TenantCollectionSpec): string {
  if (spec.embeddingModel === undefined) return '';
  const record: EmbeddingRecord = { embedding_model: spec.embeddingModel, dim: spec.dim };
  return JSON.stringify(record);
}

function parseEmbeddingRecord(description: string): EmbeddingRecord | null {
  try {
    const o = JSON.parse(description) as Partial<EmbeddingRecord> | null;
    if (o && typeof o.embedding_model === 'string' && typeof o.dim === 'number') {
      return { embedding_model: o.embedding_model, dim: o.dim };
    }
  } catch {
    // not a record
  }
  return null;
}

export class MilvusOperationError extends Error {
  override readonly name = 'MilvusOperationError';
}

const TENANT_ID_MAX_LENGTH = 64;
const HNSW_PARAMS = { M: 16, efConstruction: 200 };
/** Smallest HNSW search list: recall before speed (ef below ~64 bought nothing measurable). */
const HNSW_MIN_EF = 64;

/** Search parameters for the collection's index and a top-`k`. */
export function searchParams(spec: TenantCollectionSpec, k: number): Record<string, number> {
  return (spec.indexType ?? DEFAULT_INDEX_TYPE) === 'HNSW' ? { ef: Math.max(HNSW_MIN_EF, k) } : {};
}

function check(status: { error_code: string | number; reason: string }, what: string): void {
  if (status.error_code !== ErrorCode.SUCCESS) {
    throw new MilvusOperationError(`${what} failed: ${status.error_code} ${status.reason}`);
  }
}

function validateSpec(spec: TenantCollectionSpec): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,254}$/.test(spec.name)) {
    throw new RangeError(`collection name ${JSON.stringify(spec.name)} is not a Milvus name`);
  }
  if (spec.indexType !== undefined && spec.indexType !== 'FLAT' && spec.indexType !== 'HNSW') {
    throw new RangeError(`indexType must be FLAT or HNSW, got ${String(spec.indexType)}`);
  }
  if (!Number.isInteger(spec.dim) || spec.dim < 1 || spec.dim > 32768) {
    throw new RangeError(`dim must be an integer in 1..32768, got ${spec.dim}`);
  }
  if (
    !Number.isInteger(spec.numPartitions) ||
    spec.numPartitions < 1 ||
    spec.numPartitions > 4096
  ) {
    throw new RangeError(`numPartitions must be an integer in 1..4096, got ${spec.numPartitions}`);
  }
}

function schemaFields(spec: TenantCollectionSpec): FieldType[] {
  const f = TENANT_COLLECTION_FIELDS;
  return [
    { name: f.id, data_type: DataType.Int64, is_primary_key: true, autoID: true },
    {
      name: f.tenantId,
      data_type: DataType.VarChar,
      max_length: TENANT_ID_MAX_LENGTH,
      is_partition_key: true,
    },
    { name: f.text, data_type: DataType.VarChar, max_length: spec.textMaxLength ?? 8192 },
    { name: f.embedding, data_type: DataType.FloatVector, dim: spec.dim },
  ];
}

/**
 * An existing collection is only reused if tenants are really isolated in it: `tenant_id`
 * must be its partition key and the vector dimension must match. Anything else is refused
 * rather than silently serving an untenanted collection.
 */
async function assertTenantSchema(client: MilvusClient, spec: TenantCollectionSpec): Promise<void> {
  const desc = await client.describeCollection({ collection_name: spec.name, cache: false });
  check(desc.status, `describeCollection ${spec.name}`);
  const fields = desc.schema.fields;
  const tenant = fields.find((x) => x.name === TENANT_COLLECTION_FIELDS.tenantId);
  if (!tenant?.is_partition_key) {
    throw new MilvusOperationError(
      `collection ${spec.name} exists but ${TENANT_COLLECTION_FIELDS.tenantId} is not its partition key`,
    );
  }
  const vector = fields.find((x) => x.name === TENANT_COLLECTION_FIELDS.embedding);
  const dim = vector?.type_params.find((p) => p.key === 'dim')?.value;
  if (Number(dim) !== spec.dim) {
    throw new MilvusOperationError(
      `collection ${spec.name} exists with embedding dim ${String(dim)}, expected ${spec.dim}`,
    );
  }
  if (spec.embeddingModel !== undefined) {
    const recorded = parseEmbeddingRecord(desc.schema.description);
    if (recorded?.embedding_model !== spec.embeddingModel || recorded.dim !== spec.dim) {
      throw new MilvusOperationError(
        `collection ${spec.name} holds vectors of ${recorded ? `${recorded.embedding_model}/${recorded.dim}` : 'an unrecorded model'}, expected ${spec.embeddingModel}/${spec.dim}`,
      );
    }
  }
}

async function ensureIndex(client: MilvusClient, spec: TenantCollectionSpec): Promise<void> {
  const want = spec.indexType ?? DEFAULT_INDEX_TYPE;
  const describe = async () => {
    const d = await client.describeIndex({
      collection_name: spec.name,
      field_name: TENANT_COLLECTION_FIELDS.embedding,
    });
    if (d.status.error_code !== ErrorCode.SUCCESS) return null;
    const params = d.index_descriptions[0]?.params ?? [];
    return {
      metric: params.find((p) => p.key === 'metric_type')?.value,
      type: params.find((p) => p.key === 'index_type')?.value,
    };
  };
  const existing = await describe();
  if (existing?.metric !== undefined && existing.metric !== spec.metricType) {
    throw new MilvusOperationError(
      `collection ${spec.name} is indexed for ${existing.metric}, expected ${spec.metricType}`,
    );
  }
  if (existing?.type === want) return;
  if (existing) {
    // Indexed with another type: rebuild. Rows stay; only the derived index changes. The
    // collection must be released to drop its index; the caller loads it again.
    check(await client.releaseCollection({ collection_name: spec.name }), `release ${spec.name}`);
    const dropped = await client.dropIndex({
      collection_name: spec.name,
      field_name: TENANT_COLLECTION_FIELDS.embedding,
    });
    // Another process may have dropped it first.
    if (dropped.error_code !== ErrorCode.SUCCESS && (await describe()) !== null) {
      check(dropped, `dropIndex on ${spec.name}`);
    }
  }
  const created = await client.createIndex({
    collection_name: spec.name,
    field_name: TENANT_COLLECTION_FIELDS.embedding,
    index_type: want,
    metric_type: spec.metricType,
    params: want === 'HNSW' ? HNSW_PARAMS : {},
  });
  // Another process may have created the same index between our describe and our create.
  if (created.error_code !== ErrorCode.SUCCESS && (await describe())?.type !== want) {
    check(created, `createIndex on ${spec.name}`);
  }
}

/**
 * Creates the shared tenant collection if missing (Int64 auto-id primary key, VarChar
 * `tenant_id` partition key, VarChar `text`, FloatVector `embedding`), makes sure its vector
 * index is of `indexType` (default FLAT) for `metricType`, and loads it. Safe to call from every process at start-up.
 */
export async function ensureTenantCollection(
  client: MilvusClient,
  spec: TenantCollectionSpec,
): Promise<void> {
  validateSpec(spec);
  const has = await client.hasCollection({ collection_name: spec.name });
  check(has.status, `hasCollection ${spec.name}`);
  if (!has.value) {
    const created = await client.createCollection({
      collection_name: spec.name,
      fields: schemaFields(spec),
      num_partitions: spec.numPartitions,
      consistency_level: 'Bounded',
      description: embeddingRecord(spec),
      // Room for per-row attributes outside the fixed schema (retrieval keys documents by a
      // `source` digest so a re-ingested document replaces its old chunks).
      enable_dynamic_field: true,
    });
    // Another gateway process may have created it between our check and our create.
    const raced = await client.hasCollection({ collection_name: spec.name });
    if (!raced.value) check(created, `createCollection ${spec.name}`);
  }
  await assertTenantSchema(client, spec);
  await ensureIndex(client, spec);
  check(
    await client.loadCollectionSync({ collection_name: spec.name }),
    `loadCollection ${spec.name}`,
  );
}
