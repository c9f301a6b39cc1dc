/**
 * Knowledge operations an operator runs (the ingest command, offboarding): chunk, embed,
 * store, and bump the tenant's knowledge generation after every change, so `tenant-cache`
 * never serves an answer built from knowledge that has since changed.
 */
import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';
import { withDeadline, type RedisClient } from '../redis/client';
import type { Keyspace } from '../redis/keys';
import type { TenantId } from '../tenant/tenant-id';
import type { Embedder } from './embedder';
import type { KnowledgeStore } from './knowledge-store';

export interface ChunkingOptions {
  /** Characters per chunk (the splitter keeps paragraphs, then sentences, then words whole). */
  readonly chunkSize: number;
  readonly chunkOverlap: number;
}

export const DEFAULT_CHUNKING: ChunkingOptions = { chunkSize: 800, chunkOverlap: 100 };

export async function chunkText(
  text: string,
  opts: ChunkingOptions = DEFAULT_CHUNKING,
): Promise<string[]> {
  const splitter = new RecursiveCharacterTextSplitter({
    chunkSize: opts.chunkSize,
    chunkOverlap: opts.chunkOverlap,
  });
  return (await splitter.splitText(text)).map((c) => c.trim()).filter((c) => c.length > 0);
}

/** INCR of the tenant's knowledge generation; returns the new generation. */
export async function bumpKnowledgeGeneration(
  redis: RedisClient,
  keyspace: Keyspace,
  tenant: TenantId,
): Promise<number> {
  return Number(await withDeadline(redis, redis.incr(keyspace.knowledgeGeneration(tenant))));
}

export interface KnowledgeOps {
  readonly store: KnowledgeStore;
  readonly embedder: Embedder;
  readonly redis: RedisClient;
  readonly keyspace: Keyspace;
}

export interface Document {
  /** Source id shown with each chunk (e.g. the file name); unique per tenant. */
  readonly source: string;
  readonly text: string;
}

/**
 * Ingests documents for `tenant`: each replaces the chunks of its source. The generation is
 * bumped once at the end, and also when a later document fails after earlier ones changed
 * the corpus.
 */
export async function ingestDocuments(
  ops: KnowledgeOps,
  tenant: TenantId,
  documents: readonly Document[],
  chunking: ChunkingOptions = DEFAULT_CHUNKING,
): Promise<{ chunks: number; generation: number }> {
  let written = 0;
  let changed = false;
  try {
    for (const doc of documents) {
      const pieces = await chunkText(doc.text, chunking);
      const vectors = await ops.embedder.embedBatch(pieces);
      changed = true;
      written += await ops.store.replaceDocument(
        tenant,
        doc.source,
        pieces.map((text, i) => ({ text, vector: vectors[i] ?? [] })),
      );
    }
  } catch (e) {
    // A document already replaced changed the corpus, even though a later one failed.
    if (changed) await bumpKnowledgeGeneration(ops.redis, ops.keyspace, tenant).catch(() => 0);
    throw e;
  }
  const generation = await bumpKnowledgeGeneration(ops.redis, ops.keyspace, tenant);
  return { chunks: written, generation };
}

/** Offboarding: every chunk of the tenant deleted and verified gone; generation bumped. */
export async function offboardTenant(ops: KnowledgeOps, tenant: TenantId): Promise<number> {
  try {
    await ops.store.offboard(tenant);
  } catch (e) {
    // Even a partial delete changed the corpus.
    await bumpKnowledgeGeneration(ops.redis, ops.keyspace, tenant).catch(() => 0);
    throw e;
  }
  return bumpKnowledgeGeneration(ops.redis, ops.keyspace, tenant);
}
