/**
 * The tenants' knowledge in the shared, partition-keyed Milvus collection (lib/milvus).
 *
 * Three locks stand between one tenant's chunks and another tenant's prompt:
 * 1. the filter: every search is built here from the TenantContext's knowledge namespace
 *    (validated at the edge) and there is no way to call search without one;
 * 2. the assembly assertion: every hit's `tenant_id`, and the namespace sealed inside its
 *    text, must equal the request's namespace, or the whole search fails (integrity error:
 *    the caller refuses the request and raises an alarm), never just drops the hit;
 * 3. encryption: chunk text is sealed with the namespace's own key (chunk-cipher.ts), so a
 *    chunk of another tenant does not even decrypt.
 */
import { ConsistencyLevelEnum, type MilvusClient, type RowData } from '@zilliz/milvus2-sdk-node';
import {
  TENANT_COLLECTION_FIELDS as F,
  searchParams,
  type TenantCollectionSpec,
} from '../milvus/client';
import { tenantFilter } from '../milvus/tenant-filter';
import { checkStatus, countTenantRows, openTenantCollection } from '../milvus/tenant-rows';
import type { TenantContext } from '../tenant/context';
import type { TenantId } from '../tenant/tenant-id';
import { knowledgeNamespace } from './namespace';
import { ChunkIntegrityError, isChunkIntegrityError, type ChunkCipher } from './chunk-cipher';
import { RetrievalIntegrityError, RetrievalUnavailableError, withTimeout } from './errors';

/** Dynamic field holding the per-tenant digest of a chunk's source document. */
export const SOURCE_FIELD = 'source';

/**
 * Rows per insert RPC. The Node SDK (2.3.5) turns rows into columns with one array `concat`
 * per row for vector fields, so one insert costs time quadratic in its row count (measured
 * here: 500 rows 0.5 s, 2,000 rows 4 s, 5,000 rows 35 s); a few hundred rows per call keep it
 * linear (~1,600 rows/s on the shared 2-core machine, bench/retrieval-injector.ts).
 */
export const INSERT_BATCH_ROWS = 256;

export type Consistency = 'Strong' | 'Session' | 'Bounded' | 'Eventually';

export interface KnowledgeStoreOptions {
  readonly client: MilvusClient;
  /** The collection; `embeddingModel` is required so the vectors' model is checked. */
  readonly collection: TenantCollectionSpec & { readonly embeddingModel: string };
  readonly cipher: ChunkCipher;
  readonly consistency: Consistency;
  /** Deadline of one search. */
  readonly searchTimeoutMs: number;
}

/** What a chunk's sealed text holds. */
interface ChunkPayload {
  /** The namespace the chunk was written for: asserted again after decryption. */
  ns: string;
  src: string;
  i: number;
  text: string;
}

export interface RetrievedChunk {
  readonly source: string;
  readonly index: number;
  readonly score: number;
  readonly text: string;
}

export interface ChunkToStore {
  readonly text: string;
  readonly vector: readonly number[];
}

/** One source document's chunks, for a bulk load (`appendDocuments`). */
export interface DocumentToStore {
  readonly tenant: TenantId;
  readonly source: string;
  readonly chunks: readonly ChunkToStore[];
}

export { knowledgeNamespace };

const unavailable = (message: string) => new RetrievalUnavailableError('milvus', message);

function ok(status: { error_code: string | number; reason: string }, what: string): void {
  checkStatus(status, what, unavailable);
}

export class KnowledgeStore {
  private constructor(private readonly opts: KnowledgeStoreOptions) {}

  /**
   * Opens (creating if missing) the collection and checks that it holds vectors of the
   * configured model and dimension; a mismatch is an integrity error.
   */
  static async open(opts: KnowledgeStoreOptions): Promise<KnowledgeStore> {
    await openTenantCollection(
      opts.client,
      opts.collection,
      (m) => new RetrievalIntegrityError('collection_mismatch', m),
    );
    return new KnowledgeStore(opts);
  }

  get collectionName(): string {
    return this.opts.collection.name;
  }

  /**
   * The nearest chunks of the context's namespace, best first, at most `k`, none below
   * `minScore` (cosine similarity). Throws RetrievalIntegrityError when any hit is not the
   * namespace's own, RetrievalUnavailableError when Milvus fails or misses the deadline.
   */
  async search(
    ctx: TenantContext,
    vector: readonly number[],
    k: number,
    minScore: number,
  ): Promise<RetrievedChunk[]> {
    const namespace = knowledgeNamespace(ctx);
    const { client, collection, searchTimeoutMs } = this.opts;
    const res = await withTimeout(
      client.search({
        collection_name: collection.name,
        vector: [...vector],
        limit: k,
        filter: tenantFilter(namespace),
        metric_type: collection.metricType,
        params: searchParams(collection, k),
        output_fields: [F.tenantId, F.text],
        consistency_level: ConsistencyLevelEnum[this.opts.consistency],
        timeout: searchTimeoutMs,
      }),
      searchTimeoutMs,
      () =>
        new RetrievalUnavailableError('milvus', `search missed its ${searchTimeoutMs} ms deadline`),
    ).catch((e: unknown) => {
      if (e instanceof RetrievalUnavailableError) throw e;
      const reason = e instanceof Error ? e.message : String(e);
      throw new RetrievalUnavailableError('milvus', `search failed: ${reason}`);
    });
    ok(res.status, 'search');
    // Assert before anything is decrypted or filtered by score: one foreign hit fails it all.
    for (const hit of res.results) {
      if (hit[F.tenantId] !== namespace) {
        throw new RetrievalIntegrityError(
          'tenant_mismatch',
          `search for namespace ${namespace} returned a chunk of another tenant (id ${String(hit.id)})`,
        );
      }
    }
    const chunks: RetrievedChunk[] = [];
    for (const hit of res.results) {
      const payload = this.openChunk(namespace, hit[F.text]);
      if (hit.score >= minScore) {
        chunks.push({
          source: payload.src,
          index: payload.i,
          score: hit.score,
          text: payload.text,
        });
      }
    }
    return chunks;
  }

  private openChunk(namespace: TenantId, sealed: unknown): ChunkPayload {
    try {
      if (typeof sealed !== 'string') throw new ChunkIntegrityError('chunk text missing');
      const payload = JSON.parse(this.opts.cipher.open(namespace, sealed)) as ChunkPayload;
      if (payload.ns !== namespace) {
        throw new RetrievalIntegrityError(
          'tenant_mismatch',
          `chunk sealed for namespace ${namespace} names another namespace inside`,
        );
      }
      return payload;
    } catch (e) {
      if (e instanceof RetrievalIntegrityError) throw e;
      const reason = isChunkIntegrityError(e) ? e.message : 'unparseable payload';
      throw new RetrievalIntegrityError('chunk_unreadable', reason);
    }
  }

  /**
   * Replaces the chunks of one source document of `tenant` by `chunks` (delete by the
   * source's digest, then insert). Returns the number of chunks written.
   */
  async replaceDocument(
    tenant: TenantId,
    source: string,
    chunks: readonly ChunkToStore[],
  ): Promise<number> {
    const { client, collection, cipher } = this.opts;
    const digest = cipher.sourceDigest(tenant, source);
    const filter = `${tenantFilter(tenant)} && ${SOURCE_FIELD} == "${digest}"`;
    ok(
      (await client.deleteEntities({ collection_name: collection.name, filter })).status,
      'delete',
    );
    if (chunks.length === 0) return 0;
    return this.insertRows(this.sealRows({ tenant, source, chunks }));
  }

  /**
   * Bulk load: appends the chunks of many documents (of any tenants) in one insert, sealed
   * exactly as `replaceDocument` seals them, but without deleting a source's older chunks
   * first. For loading documents known to be new (an initial import, a benchmark dataset);
   * re-ingesting a document goes through `replaceDocument`. Returns the number of chunks
   * written.
   */
  async appendDocuments(docs: readonly DocumentToStore[]): Promise<number> {
    const rows = docs.flatMap((d) => this.sealRows(d));
    if (rows.length === 0) return 0;
    return this.insertRows(rows);
  }

  private sealRows(doc: DocumentToStore): RowData[] {
    const { cipher } = this.opts;
    const digest = cipher.sourceDigest(doc.tenant, doc.source);
    return doc.chunks.map((c, i) => {
      const payload: ChunkPayload = { ns: doc.tenant, src: doc.source, i, text: c.text };
      return {
        [F.tenantId]: doc.tenant,
        [F.text]: cipher.seal(doc.tenant, JSON.stringify(payload)),
        [F.embedding]: [...c.vector],
        [SOURCE_FIELD]: digest,
      };
    });
  }

  /** Inserts rows in batches of at most INSERT_BATCH_ROWS (one insert RPC each). */
  private async insertRows(data: RowData[]): Promise<number> {
    for (let i = 0; i < data.length; i += INSERT_BATCH_ROWS) {
      const res = await this.opts.client.insert({
        collection_name: this.opts.collection.name,
        data: data.slice(i, i + INSERT_BATCH_ROWS),
      });
      ok(res.status, 'insert');
    }
    return data.length;
  }

  /** Chunks of `tenant` now stored (strongly consistent). */
  async countChunks(tenant: TenantId): Promise<number> {
    return countTenantRows(this.opts.client, this.opts.collection.name, tenant, unavailable);
  }

  /** Offboarding: deletes every chunk of `tenant`, then verifies none is left. */
  async offboard(tenant: TenantId): Promise<void> {
    const { client, collection } = this.opts;
    const deleted = await client.deleteEntities({
      collection_name: collection.name,
      filter: tenantFilter(tenant),
    });
    ok(deleted.status, 'delete');
    const left = await this.countChunks(tenant);
    if (left !== 0) {
      throw new RetrievalUnavailableError(
        'milvus',
        `offboarding ${tenant}: ${left} chunk(s) still stored after the delete`,
      );
    }
  }
}
