/**
 * Per-tenant token buckets in Redis: one atomic refill-and-take per call
 * (scripts/token-bucket-1.lua), timed by the Redis server's clock so that every gateway node
 * sees the same bucket.
 */
import type { RedisClient } from './client';
import type { RedisKey } from './keys';
import { loadScript, runScript } from './lua-script';

export interface TokenBucketLimit {
  /** Most tokens the bucket holds: the allowed burst. */
  readonly capacity: number;
  /** Tokens added per second: the sustained rate. */
  readonly refillPerSecond: number;
}

export interface TokenBucketDecision {
  readonly allowed: boolean;
  /** Whole tokens left after this call. */
  readonly remaining: number;
  /** 0 when allowed; otherwise how long until `cost` tokens will be there. */
  readonly retryAfterMs: number;
}

export class TokenBucketReplyError extends Error {
  override readonly name = 'TokenBucketReplyError';
}

function checkLimit(limit: TokenBucketLimit, cost: number): void {
  if (!Number.isFinite(limit.capacity) || limit.capacity <= 0) {
    throw new RangeError(`capacity must be > 0, got ${limit.capacity}`);
  }
  if (!Number.isFinite(limit.refillPerSecond) || limit.refillPerSecond <= 0) {
    throw new RangeError(`refillPerSecond must be > 0, got ${limit.refillPerSecond}`);
  }
  if (!Number.isFinite(cost) || cost < 0 || cost > limit.capacity) {
    // A cost above capacity could never be granted: that is a configuration error, not a 429.
    throw new RangeError(`cost must be between 0 and capacity (${limit.capacity}), got ${cost}`);
  }
}

function toDecision(reply: unknown): TokenBucketDecision {
  if (
    Array.isArray(reply) &&
    reply.length === 3 &&
    reply.every((v): v is number => typeof v === 'number')
  ) {
    const [allowed, remaining, retryAfterMs] = reply as [number, number, number];
    return { allowed: allowed === 1, remaining, retryAfterMs };
  }
  throw new TokenBucketReplyError(`unexpected token-bucket reply: ${JSON.stringify(reply)}`);
}

/** Takes `cost` tokens from the bucket at `key` if it holds that many; all or nothing. */
export async function takeTokens(
  client: RedisClient,
  key: RedisKey,
  limit: TokenBucketLimit,
  cost = 1,
): Promise<TokenBucketDecision> {
  checkLimit(limit, cost);
  const reply = await runScript(
    client,
    loadScript('token-bucket-1'),
    [key],
    [limit.capacity, limit.refillPerSecond, cost],
  );
  return toDecision(reply);
}
