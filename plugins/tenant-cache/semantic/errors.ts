/**
 * The one failure of the semantic cache: Milvus, the embeddings endpoint or the tenant's Redis
 * index failed, or the work missed its deadline. It is never an error of the request: a lookup
 * that fails is a miss, a store that fails is skipped, each counted by its outcome.
 *
 * No Milvus SDK here: the phases load this module on every plan, the SDK only on first use.
 */
import { withTimeout } from '../../../lib/retrieval/errors';

export class SemanticUnavailableError extends Error {
  override readonly name = 'SemanticUnavailableError';
  constructor(
    readonly kind: 'milvus' | 'embeddings' | 'timeout' | 'redis',
    message: string,
  ) {
    super(message);
  }
}

export function isSemanticUnavailable(e: unknown): e is SemanticUnavailableError {
  return e instanceof SemanticUnavailableError;
}

/** The metric outcome of a failed lookup or store: a missed deadline, or anything else. */
export function unavailableOutcome(e: unknown): 'timeout' | 'unavailable' {
  return isSemanticUnavailable(e) && e.kind === 'timeout' ? 'timeout' : 'unavailable';
}

/** `work`, or SemanticUnavailableError('timeout') after `ms`. */
export function withinDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return withTimeout(
    work,
    ms,
    () => new SemanticUnavailableError('timeout', `${what} missed its ${ms} ms deadline`),
  );
}
