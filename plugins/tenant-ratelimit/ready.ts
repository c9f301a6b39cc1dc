/**
 * An instance's start-up: the validated config turned into what every request uses (the Redis
 * client, the upstream's capacity, the limiters), or the reason it is misconfigured. Never
 * throws past the config read: an unusable config makes every request a 500
 * plugin_misconfigured instead of Kong failing StartInstance.
 */
import { createRedis, type RedisClient } from '../../lib/redis/client';
import type { UpstreamCapacity } from '../../lib/redis/fair-queue';
import { createKeyspace } from '../../lib/redis/keys';
import type { StartUp as KitStartUp } from '../../lib/plugin/define';
import { routeKeyOf } from '../../lib/request/seat';
import { readConfig } from '../../lib/schema/config';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { warmCountPool, type EstimateOptions } from '../../lib/tokens/estimate';
import { Limiters } from './limiters/limiter';
import { NodeLimiter } from './limiters/node';
import { RedisLimiter } from './limiters/redis';
import * as metrics from './metrics';
import { RefusalMemo } from './refusal-memo';
import type { TenantRatelimitConfig } from './config';
import { checkConfig } from './config';
import { Schema } from './schema';
import { PLUGIN_NAME } from './state';
import { notify } from '../../lib/pdk/notices';

export interface Ready {
  readonly config: TenantRatelimitConfig;
  /** The route and service this instance is configured on (lib/request/seat.ts). */
  readonly routeKey: string;
  readonly capacity: UpstreamCapacity;
  /** The upstream has a capacity to queue for (seats or tokens). */
  readonly queueEnabled: boolean;
  readonly estimateOptions: Partial<EstimateOptions>;
  readonly redis: RedisClient;
  readonly limiters: Limiters;
  /** Tenants refused by their requests bucket, answered again without Redis (refusal-memo.ts). */
  readonly refusals: RefusalMemo;
  /** The tenant's metric label (bounded). */
  label(tenant: TenantId): string;
}

export type StartUp = KitStartUp<Ready>;

export function startUp(raw: unknown): StartUp {
  const config = readConfig(Schema, raw);
  // The counting thread for long prompts (lib/tokens/count-pool.ts), with its own encodings.
  warmCountPool();
  const q = config.queue;
  const capacity: UpstreamCapacity = {
    maxConcurrent: q.max_concurrent,
    tokensPerMinute: q.tokens_per_minute,
    tokenBurst: q.token_burst ?? q.tokens_per_minute,
    seatLeaseMs: q.seat_ttl_seconds * 1000,
    heartbeatMs: Math.max(2000, 4 * q.poll_interval_ms),
    // Never all seats: a flex request must be able to run when nothing urgent waits.
    flexReserve: Math.min(config.flex.reserved_seats, Math.max(0, q.max_concurrent - 1)),
  };
  const e = config.estimate;
  try {
    checkConfig(config);
    const keys = createKeyspace(config.redis.key_namespace);
    const redis = createRedis({
      url: config.redis.url,
      commandTimeoutMs: config.redis.timeout_ms,
      log: (m) => notify(`${PLUGIN_NAME}: ${m}`),
    });
    const cluster = new RedisLimiter(redis, keys, keys.fairQueue(q.upstream), capacity, q);
    const queueEnabled = capacity.maxConcurrent > 0 || capacity.tokensPerMinute > 0;
    // Subscribed before the first wait, so no early grant announcement is missed.
    if (queueEnabled) cluster.listener().start();
    const ready: Ready = {
      config,
      routeKey: routeKeyOf(raw),
      capacity,
      queueEnabled,
      estimateOptions: {
        defaultMaxTokens: e.default_max_tokens,
        maxTokensCap: e.max_tokens_cap,
        unknownPromptTokens: e.unknown_prompt_tokens,
      },
      redis,
      limiters: new Limiters(
        cluster,
        new NodeLimiter(config, capacity.seatLeaseMs),
        config.on_redis_unavailable,
      ),
      refusals: new RefusalMemo(),
      label: (tenant) => metrics.tenantLabels(config.metrics_max_tenants).label(tenant),
    };
    return { ok: true, ready };
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
}
