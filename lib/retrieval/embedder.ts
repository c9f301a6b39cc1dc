/**
 * Embeddings from an OpenAI-compatible `POST /v1/embeddings` endpoint (OpenAI, a local
 * inference server, or the project's mock upstream), with a per-tenant Redis cache of query
 * embeddings. Every answer is checked: the right number of vectors, each of the configured
 * dimension and finite; anything else is an integrity error, never searched with.
 */
import { createHash } from 'node:crypto';
import { withDeadline, type RedisClient } from '../redis/client';
import type { Keyspace } from '../redis/keys';
import type { TenantId } from '../tenant/tenant-id';
import type { EmbeddingsConfig } from '../schema/typedefs';
import { RetrievalIntegrityError, RetrievalUnavailableError } from './errors';

export interface EmbedderOptions {
  /** Full URL of the endpoint, e.g. `http://127.0.0.1:9000/v1/embeddings`. */
  readonly url: string;
  readonly model: string;
  readonly dim: number;
  /** Send `dimensions` in the request (OpenAI text-embedding-3 and the mock honour it). */
  readonly sendDimensions: boolean;
  readonly apiKey: string | null;
  readonly timeoutMs: number;
  /** Query-embedding cache; null disables it. */
  readonly cache: {
    readonly redis: RedisClient;
    readonly keyspace: Keyspace;
    readonly ttlSeconds: number;
  } | null;
}

/**
 * The options of an `embeddingsRecord` config (lib/schema/typedefs.ts), as retrieval-injector and
 * the semantic cache both declare it: the API key read from the plugin server's environment
 * (null when unnamed or unset), the tenant-keyed cache on when its TTL is above 0 and a Redis is
 * given.
 */
export function embedderOptions(
  c: EmbeddingsConfig,
  cache: { readonly redis: RedisClient; readonly keyspace: Keyspace } | null,
  env: NodeJS.ProcessEnv = process.env,
): EmbedderOptions {
  return {
    url: c.url,
    model: c.model,
    dim: c.dimensions,
    sendDimensions: c.send_dimensions,
    apiKey: c.api_key_env ? (env[c.api_key_env] ?? null) : null,
    timeoutMs: c.timeout_ms,
    cache: cache && c.cache_ttl_seconds > 0 ? { ...cache, ttlSeconds: c.cache_ttl_seconds } : null,
  };
}

/** Texts per request when embedding a batch (ingestion). */
export const EMBED_BATCH = 64;

export type CacheOutcome = 'hit' | 'miss' | 'error' | 'off';

function encodeVector(v: readonly number[]): string {
  return Buffer.from(new Float32Array(v).buffer).toString('base64');
}

function decodeVector(s: string, dim: number): number[] | null {
  const buf = Buffer.from(s, 'base64');
  if (buf.length !== dim * 4) return null;
  const out: number[] = [];
  for (let i = 0; i < dim; i++) out.push(buf.readFloatLE(i * 4));
  return out;
}

export class Embedder {
  constructor(readonly opts: EmbedderOptions) {}

  /** The cache digest of a text for this model and dimension. */
  digest(text: string): string {
    return createHash('sha256')
      .update(`${this.opts.model}\0${this.opts.dim}\0${text}`, 'utf8')
      .digest('hex');
  }

  /** One query embedding for `tenant`, from the tenant's cache when there. */
  async embedQuery(
    tenant: TenantId,
    text: string,
  ): Promise<{ vector: number[]; cache: CacheOutcome }> {
    const cache = this.opts.cache;
    if (!cache || cache.ttlSeconds === 0) {
      const [vector] = await this.embedBatch([text]);
      return { vector: vector ?? [], cache: 'off' };
    }
    const key = cache.keyspace.embeddingCache(tenant, this.digest(text));
    let outcome: CacheOutcome = 'miss';
    try {
      const cached = await withDeadline(cache.redis, cache.redis.get(key));
      const vector = typeof cached === 'string' ? decodeVector(cached, this.opts.dim) : null;
      if (vector) return { vector, cache: 'hit' };
    } catch {
      // The cache only saves a call: a Redis outage costs an embedding request, nothing more.
      outcome = 'error';
    }
    const [vector] = await this.embedBatch([text]);
    if (!vector) throw new RetrievalIntegrityError('embedding_mismatch', 'no embedding returned');
    if (outcome === 'miss') {
      withDeadline(
        cache.redis,
        cache.redis.set(key, encodeVector(vector), { EX: cache.ttlSeconds }),
      ).catch(() => undefined);
    }
    return { vector, cache: outcome };
  }

  /** Embeddings of `texts`, in order, in requests of at most EMBED_BATCH texts. */
  async embedBatch(texts: readonly string[]): Promise<number[][]> {
    const out: number[][] = [];
    for (let i = 0; i < texts.length; i += EMBED_BATCH) {
      out.push(...(await this.request(texts.slice(i, i + EMBED_BATCH))));
    }
    return out;
  }

  private async request(input: readonly string[]): Promise<number[][]> {
    const { url, model, dim, sendDimensions, apiKey, timeoutMs } = this.opts;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey) headers.authorization = `Bearer ${apiKey}`;
    let res: Response;
    let body: unknown;
    const payload = JSON.stringify({
      model,
      input,
      ...(sendDimensions ? { dimensions: dim } : {}),
    });
    // One deadline for the call, a retry included.
    const signal = AbortSignal.timeout(timeoutMs);
    const post = () => fetch(url, { method: 'POST', headers, body: payload, signal });
    try {
      try {
        res = await post();
      } catch (e) {
        // A kept-alive socket the server closed as it was reused (its idle timeout against
        // ours, on a loaded machine): nothing was answered, and an embedding is safe to ask
        // again. Once, within the same deadline; a timeout or a refusal is not retried.
        if (!staleSocket(e) || signal.aborted) throw e;
        res = await post();
      }
      body = await res.json();
    } catch (e) {
      const reason = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      throw new RetrievalUnavailableError('embeddings', `embeddings endpoint failed: ${reason}`);
    }
    if (!res.ok) {
      throw new RetrievalUnavailableError(
        'embeddings',
        `embeddings endpoint answered ${res.status}`,
      );
    }
    return this.vectors(body, input.length);
  }

  private vectors(body: unknown, expected: number): number[][] {
    const data = (body as { data?: unknown } | null)?.data;
    if (!Array.isArray(data) || data.length !== expected) {
      throw new RetrievalIntegrityError(
        'embedding_mismatch',
        `embeddings endpoint returned ${Array.isArray(data) ? data.length : 'no'} vectors for ${expected} inputs`,
      );
    }
    const out: Array<number[] | undefined> = new Array<number[] | undefined>(expected).fill(
      undefined,
    );
    const items = data as Array<{ index?: unknown; embedding?: unknown } | null>;
    items.forEach((item, position) => {
      const index = typeof item?.index === 'number' ? item.index : position;
      const v = item?.embedding;
      if (
        !Array.isArray(v) ||
        v.length !== this.opts.dim ||
        !v.every((x) => typeof x === 'number' && Number.isFinite(x)) ||
        index < 0 ||
        index >= expected ||
        out[index] !== undefined
      ) {
        throw new RetrievalIntegrityError(
          'embedding_mismatch',
          `embedding is not a vector of dimension ${this.opts.dim} (model ${this.opts.model})`,
        );
      }
      out[index] = v as number[];
    });
    return out as number[][];
  }
}

/**
 * undici's error for a connection the other side closed before any answer ("other side closed",
 * ECONNRESET, EPIPE): fetch raises TypeError('fetch failed') with it as the cause.
 */
function staleSocket(e: unknown): boolean {
  const cause = e instanceof Error ? (e.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : '';
  return ['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED'].includes(code);
}
