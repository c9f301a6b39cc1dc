/**
 * The semantic cache within the tenant: a near-duplicate question answered from the tenant's
 * own earlier answers, by embedding similarity in Milvus.
 *
 * One shared collection (its own, not the knowledge collection) with the VarChar `tenant_id`
 * partition key (lib/milvus), each row: the tenant, the question's embedding, the sealed
 * answer (`text`), and two dynamic fields, `scope` (key.ts) and `expires_at` (unix
 * seconds). Four locks stand between one tenant's answer and another tenant:
 * 1. the filter: every search is built here from the TenantContext's tenant id, the scope and
 *    the clock (`tenant_id == "<t>" && scope == "<hex>" && expires_at > <now>`);
 * 2. the assertion: the best hit's `tenant_id` and `scope` must be the request's, or it is an
 *    alarm and a miss;
 * 3. encryption: the answer is sealed with AES-256-GCM under the tenant's key (row.ts),
 *    with the tenant, the key id, the scope and the expiry as associated data: a row planted
 *    under another tenant or scope does not open (an alarm, a miss);
 * 4. the scope itself is an HMAC under the tenant's key, so no tenant can compute another's.
 *
 * Nothing is held forever: a row carries its expiry (searches ignore expired rows), and the
 * tenant's Redis index (scripts/semantic-index-add-1.lua) bounds the tenant's rows in number
 * and evicts expired or surplus rows from Milvus on the next store. A purge changes the cache
 * generation, which is part of the scope: every earlier row is out of reach at once; the
 * purge command also deletes the tenant's rows (purge.ts).
 */
import { ConsistencyLevelEnum, type MilvusClient } from '@zilliz/milvus2-sdk-node';
import {
  TENANT_COLLECTION_FIELDS as F,
  type TenantCollectionSpec,
} from '../../../lib/milvus/client';
import { tenantFilter } from '../../../lib/milvus/tenant-filter';
import {
  checkStatus,
  countTenantRows,
  openTenantCollection,
} from '../../../lib/milvus/tenant-rows';
import type { RedisClient } from '../../../lib/redis/client';
import type { Keyspace } from '../../../lib/redis/keys';
import { loadScript, runScript } from '../../../lib/redis/lua-script';
import { join } from 'node:path';
import type { Embedder } from '../../../lib/retrieval/embedder';
import type { TenantContext } from '../../../lib/tenant/context';
import type { TenantId } from '../../../lib/tenant/tenant-id';
import type { TenantCacheKeys } from '../crypto';
import type { CachedResponse } from '../entry';
import { SemanticUnavailableError } from './errors';
import { SCOPE_PATTERN } from './key';
import { openRow, sealRow } from './row';

export const SCOPE_FIELD = 'scope';
export const EXPIRES_FIELD = 'expires_at';
/** Milvus caps a VarChar at 65,535 bytes: a larger sealed answer is not stored. */
export const SEMANTIC_TEXT_MAX_BYTES = 65535;

export type Consistency = 'Strong' | 'Session' | 'Bounded' | 'Eventually';

export interface SemanticStoreOptions {
  readonly client: MilvusClient;
  readonly collection: TenantCollectionSpec & { readonly embeddingModel: string };
  readonly embedder: Embedder;
  readonly redis: RedisClient;
  readonly keyspace: Keyspace;
  readonly consistency: Consistency;
}

export type SemanticLookup =
  | { kind: 'hit'; response: CachedResponse; similarity: number }
  /** No row of the scope, or the best one is below the threshold (similarity then set). */
  | { kind: 'miss'; similarity: number | null }
  /** Written under another master secret: an ordinary miss. */
  | { kind: 'stale'; similarity: number }
  /** The best row is not the tenant's, or does not open with its key: an alarm, a miss. */
  | { kind: 'forged'; similarity: number; detail: string };

export type SemanticStoreOutcome = 'stored' | 'too_large';

function checkScope(scope: string): string {
  if (!SCOPE_PATTERN.test(scope)) throw new RangeError('a semantic scope is 64 hex characters');
  return scope;
}

const unavailable = (message: string) => new SemanticUnavailableError('milvus', message);

function ok(status: { error_code: string | number; reason: string }, what: string): void {
  checkStatus(status, what, unavailable);
}

const ID_PATTERN = /^-?\d{1,20}$/;
/** The semantic cache's own script (scripts/, copied beside the build by scripts/build.js). */
const indexScript = () => loadScript('semantic-index-add-1', join(__dirname, 'scripts'));

/**
 * The sweep of a tenant's expired rows (by expression: Milvus 2.3 runs a query to resolve it)
 * runs at most once a minute per tenant and process. It only frees space: an expired row is
 * never served (`openRow`), and the index names the rows to delete by id on every store. Before,
 * a tenant at its `max_entries_per_tenant` swept on every store (each one evicts), a query and a
 * delete in Milvus per cacheable miss.
 */
export const SWEEP_INTERVAL_MS = 60_000;
const MAX_SWEEP_MEMO = 10_000;
const lastSweep = new Map<TenantId, number>();

function sweepDue(tenant: TenantId, nowMs: number): boolean {
  const last = lastSweep.get(tenant);
  if (last !== undefined && nowMs - last < SWEEP_INTERVAL_MS && nowMs >= last) return false;
  if (lastSweep.size >= MAX_SWEEP_MEMO) lastSweep.clear();
  lastSweep.set(tenant, nowMs);
  return true;
}

export class SemanticStore {
  private constructor(private readonly opts: SemanticStoreOptions) {}

  /** Opens (creating if missing) the collection; one of another model or size is refused. */
  static async open(opts: SemanticStoreOptions): Promise<SemanticStore> {
    await openTenantCollection(opts.client, opts.collection, unavailable);
    return new SemanticStore(opts);
  }

  get collectionName(): string {
    return this.opts.collection.name;
  }

  private async embed(tenant: TenantId, question: string): Promise<number[]> {
    try {
      return (await this.opts.embedder.embedQuery(tenant, question)).vector;
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      throw new SemanticUnavailableError('embeddings', reason);
    }
  }

  /**
   * The tenant's best earlier answer in `scope` whose question is at least `threshold`
   * similar (cosine) to `question`. Throws SemanticUnavailableError when Milvus or the
   * embeddings endpoint fails; the caller holds the deadline.
   */
  async lookup(
    ctx: TenantContext,
    keys: TenantCacheKeys,
    scope: string,
    question: string,
    threshold: number,
    nowMs: number,
  ): Promise<SemanticLookup> {
    checkScope(scope);
    if (keys.tenantId !== ctx.tenantId) throw new Error('keys of another tenant');
    const vector = await this.embed(ctx.tenantId, question);
    const { client, collection } = this.opts;
    const nowSec = Math.floor(nowMs / 1000);
    let res;
    try {
      res = await client.search({
        collection_name: collection.name,
        vector,
        limit: 1,
        filter: `${tenantFilter(ctx.tenantId)} && ${SCOPE_FIELD} == "${scope}" && ${EXPIRES_FIELD} > ${nowSec}`,
        metric_type: collection.metricType,
        params: { ef: 64 },
        output_fields: [F.tenantId, F.text, SCOPE_FIELD, EXPIRES_FIELD],
        consistency_level: ConsistencyLevelEnum[this.opts.consistency],
      });
    } catch (e) {
      throw new SemanticUnavailableError(
        'milvus',
        `search failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    ok(res.status, 'search');
    const best = res.results[0];
    if (!best) return { kind: 'miss', similarity: null };
    const similarity = best.score;
    // Asserted before anything is compared or decrypted.
    if (best[F.tenantId] !== ctx.tenantId || best[SCOPE_FIELD] !== scope) {
      return {
        kind: 'forged',
        similarity,
        detail: `search for tenant ${ctx.tenantId} returned a row of another tenant or scope (id ${String(best.id)})`,
      };
    }
    if (similarity < threshold) return { kind: 'miss', similarity };
    const expiresAt = Number(best[EXPIRES_FIELD]);
    const text: unknown = best[F.text];
    if (typeof text !== 'string' || !Number.isSafeInteger(expiresAt)) {
      return { kind: 'forged', similarity, detail: `row ${String(best.id)} is malformed` };
    }
    const opened = openRow(keys, scope, expiresAt, text);
    if (opened === 'stale') return { kind: 'stale', similarity };
    if (opened === 'forged') {
      return {
        kind: 'forged',
        similarity,
        detail: `row ${String(best.id)} under tenant ${ctx.tenantId} failed authentication`,
      };
    }
    return { kind: 'hit', response: opened, similarity };
  }

  /**
   * Stores the tenant's answer to `question` in `scope` for `ttlSeconds`, records it in the
   * tenant's index and deletes what the index evicts (expired rows, rows over `maxEntries`).
   */
  async store(
    ctx: TenantContext,
    keys: TenantCacheKeys,
    scope: string,
    question: string,
    response: CachedResponse,
    ttlSeconds: number,
    maxEntries: number,
    nowMs: number,
  ): Promise<SemanticStoreOutcome> {
    checkScope(scope);
    if (keys.tenantId !== ctx.tenantId) throw new Error('keys of another tenant');
    const expiresAt = Math.floor(nowMs / 1000) + ttlSeconds;
    const text = sealRow(keys, scope, expiresAt, response);
    if (Buffer.byteLength(text) > SEMANTIC_TEXT_MAX_BYTES) return 'too_large';
    const vector = await this.embed(ctx.tenantId, question);
    const { client, collection, redis, keyspace } = this.opts;
    const inserted = await client
      .insert({
        collection_name: collection.name,
        data: [
          {
            [F.tenantId]: ctx.tenantId,
            [F.text]: text,
            [F.embedding]: vector,
            [SCOPE_FIELD]: scope,
            [EXPIRES_FIELD]: expiresAt,
          },
        ],
      })
      .catch((e: unknown) => {
        throw new SemanticUnavailableError(
          'milvus',
          `insert failed: ${e instanceof Error ? e.message : String(e)}`,
        );
      });
    ok(inserted.status, 'insert');
    const ids = 'int_id' in inserted.IDs ? inserted.IDs.int_id.data : inserted.IDs.str_id.data;
    const id = String(ids[0]);
    if (!ID_PATTERN.test(id)) throw new SemanticUnavailableError('milvus', 'insert gave no id');
    let evicted: unknown;
    try {
      evicted = await runScript(
        redis,
        indexScript(),
        [keyspace.semanticIndex(ctx.tenantId)],
        [id, expiresAt * 1000, nowMs, maxEntries],
      );
    } catch (e) {
      // The row still expires by its own `expires_at`; only the count bound waits a store.
      throw new SemanticUnavailableError(
        'redis',
        `index update failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    const gone = (Array.isArray(evicted) ? evicted : [])
      .map(String)
      .filter((x) => ID_PATTERN.test(x));
    if (gone.length > 0) {
      await this.deleteRows(gone);
      // A sweep of the tenant's expired rows, in case its index was lost (Redis flushed,
      // failed over): such rows are never served, and this keeps them from being kept forever.
      // At most once a minute per tenant (SWEEP_INTERVAL_MS).
      if (sweepDue(ctx.tenantId, Date.now())) {
        await this.sweepExpired(ctx.tenantId, Math.floor(nowMs / 1000));
      }
    }
    return 'stored';
  }

  /**
   * By primary key only: Milvus 2.3 resolves any other delete expression with a query first,
   * which may not yet see a row just inserted (Bounded consistency) and then deletes nothing.
   * The ids come from the tenant's own index (its hash slot), never from a request.
   */
  private async deleteRows(ids: readonly string[]): Promise<void> {
    const res = await this.opts.client.deleteEntities({
      collection_name: this.opts.collection.name,
      filter: `${F.id} in [${ids.join(',')}]`,
    });
    ok(res.status, 'delete');
  }

  private async sweepExpired(tenant: TenantId, nowSec: number): Promise<void> {
    const res = await this.opts.client.deleteEntities({
      collection_name: this.opts.collection.name,
      filter: `${tenantFilter(tenant)} && ${EXPIRES_FIELD} < ${nowSec}`,
    });
    ok(res.status, 'sweep');
  }

  /** Rows of `tenant` now stored, expired or not (strongly consistent). */
  async countRows(tenant: TenantId): Promise<number> {
    return countTenantRows(this.opts.client, this.opts.collection.name, tenant, unavailable);
  }
}
