/**
 * The two kinds of retrieval failure, so callers branch on kinds, not on messages:
 * - unavailable: a dependency (Milvus, the embeddings endpoint) is down, slow or refusing.
 *   Configurable: refuse with 503, or proceed without context.
 * - integrity: the knowledge is not what it must be (a hit of another tenant, a chunk that
 *   does not open with the tenant's key, an embedding of the wrong model or dimension).
 *   Never skipped: the request is refused with 500 and an alarm is raised.
 */
export class RetrievalUnavailableError extends Error {
  override readonly name = 'RetrievalUnavailableError';
  constructor(
    readonly dependency: 'milvus' | 'embeddings',
    message: string,
  ) {
    super(message);
  }
}

export type IntegrityKind =
  'tenant_mismatch' | 'chunk_unreadable' | 'embedding_mismatch' | 'collection_mismatch';

export class RetrievalIntegrityError extends Error {
  override readonly name = 'RetrievalIntegrityError';
  constructor(
    readonly kind: IntegrityKind,
    message: string,
  ) {
    super(message);
  }
}

export function isRetrievalUnavailableError(e: unknown): e is RetrievalUnavailableError {
  return e instanceof RetrievalUnavailableError;
}

export function isRetrievalIntegrityError(e: unknown): e is RetrievalIntegrityError {
  return e instanceof RetrievalIntegrityError;
}

/** Settles like `work`, or rejects with `onTimeout()` after `ms`. The work stays in flight. */
export function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
