/**
 * Tenant ids are validated once, at the edge, against a strict pattern; every later use
 * (Redis key, Milvus filter expression, metric label, cache key, upstream header) relies on
 * it. The brand makes that reliance checkable: a function that builds a key or a filter takes
 * a `TenantId`, and the only way to get one is through `parseTenantId`.
 *
 * The pattern is deliberately narrow: lowercase letters, digits, `-` and `_`, starting with a
 * letter or digit, at most 64 characters. It excludes everything that has meaning in a Redis
 * hash tag (`{`, `}`), a key separator (`:`), a Milvus expression (quotes, backslash, spaces,
 * operators), a header value (CR, LF) or a Prometheus label, and it has no case variants, so
 * `Acme` and `acme` cannot be two spellings of one tenant.
 */
export type TenantId = string & { readonly __brand: 'TenantId' };

export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const TENANT_ID_MAX_LENGTH = 64;

/** Thrown when a string is not a valid tenant id. The message never echoes the raw input. */
export class InvalidTenantIdError extends Error {
  override readonly name = 'InvalidTenantIdError';
  constructor(readonly reason: string) {
    super(`invalid tenant id: ${reason}`);
  }
}

export function isInvalidTenantIdError(e: unknown): e is InvalidTenantIdError {
  return e instanceof InvalidTenantIdError;
}

/** Validates `s` and returns it as a `TenantId`; throws `InvalidTenantIdError` otherwise. */
export function parseTenantId(s: unknown): TenantId {
  if (typeof s !== 'string') throw new InvalidTenantIdError('not a string');
  if (s.length === 0) throw new InvalidTenantIdError('empty');
  if (s.length > TENANT_ID_MAX_LENGTH) {
    throw new InvalidTenantIdError(`longer than ${TENANT_ID_MAX_LENGTH} characters`);
  }
  if (!TENANT_ID_PATTERN.test(s)) {
    throw new InvalidTenantIdError(`must match ${TENANT_ID_PATTERN.source}`);
  }
  return s as TenantId;
}

/** Like `parseTenantId`, but returns undefined instead of throwing. */
export function tryParseTenantId(s: unknown): TenantId | undefined {
  try {
    return parseTenantId(s);
  } catch {
    return undefined;
  }
}
