/**
 * `retrieve(ctx, query, k)`: the one way to search tenant knowledge. It takes a
 * TenantContext, embeds the query (cached per tenant) and searches the context's own
 * namespace; there is no parameter through which another tenant, or no tenant, could be named.
 */
import type { TenantContext } from '../tenant/context';
import type { CacheOutcome, Embedder } from './embedder';
import type { KnowledgeStore, RetrievedChunk } from './knowledge-store';

export interface Retrieval {
  readonly chunks: readonly RetrievedChunk[];
  readonly cache: CacheOutcome;
}

export class Retriever {
  constructor(
    readonly embedder: Embedder,
    readonly store: KnowledgeStore,
  ) {}

  async retrieve(
    ctx: TenantContext,
    query: string,
    k: number,
    options: { minScore?: number } = {},
  ): Promise<Retrieval> {
    if (!Number.isInteger(k) || k < 1)
      throw new RangeError(`k must be a positive integer, got ${k}`);
    const { vector, cache } = await this.embedder.embedQuery(ctx.tenantId, query);
    const chunks = await this.store.search(ctx, vector, k, options.minScore ?? -Infinity);
    return { chunks, cache };
  }
}
