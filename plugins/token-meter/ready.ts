/**
 * token-meter's start-up: the config read and checked once, and what every request uses built
 * from it (the key namespace, the Redis client, the spool, the sweeper of expired
 * reservations), or the reason the instance is misconfigured. Never throws past the config
 * read: an unusable config makes every request a 500 plugin_misconfigured (refusals.ts) rather
 * than fail StartInstance (Kong 3.9 answers a failed one with a bare 500 and retries it on
 * every request).
 */
import { createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { createKeyspace, type Keyspace } from '../../lib/redis/keys';
import { startUpOf, type StartUp as KitStartUp } from '../../lib/plugin/define';
import { readConfig } from '../../lib/schema/config';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type * as EstimateModule from '../../lib/tokens/estimate';
import { ExpirySweeper } from './expiry';
import { Spool, spoolSettler } from './ledger';
import * as metrics from './metrics';
import { checkConfig, type TokenMeterConfig } from './config';
import { Schema } from './schema';
import { notify } from '../../lib/pdk/notices';

/**
 * The estimate module and its BPE vocabularies (~0.7 s of CPU to build) are loaded after
 * start-up, not at require time, so the plugin server answers Kong's query and starts
 * listening at once (under load a slow start-up is a failed start). Usually tenant-ratelimit
 * has already published the estimate and the vocabularies are never used here.
 */
let estimateModule: Promise<typeof EstimateModule> | undefined;
export function estimates(): Promise<typeof EstimateModule> {
  estimateModule ??= import('../../lib/tokens/estimate');
  return estimateModule;
}

/** One replay timer per process, whatever the number of instances. */
let replayTimer: NodeJS.Timeout | undefined;

/**
 * One sweeper of expired reservations per (Redis, key namespace) in this process, whatever the
 * number of instances (an instance is recreated after 60 s idle; the sweeper lives on).
 */
const sweepers = new Map<string, ExpirySweeper>();

/** A usable instance: its config passed every check. */
export class Ready {
  readonly keys: Keyspace;
  readonly spool: Spool;
  readonly redis: RedisClient;
  readonly sweeper: ExpirySweeper;

  /** Throws what the config's checks refuse; startUp() turns that into a misconfiguration. */
  constructor(readonly config: TokenMeterConfig) {
    checkConfig(config);
    this.keys = createKeyspace(config.redis.key_namespace);
    this.spool = new Spool(config.spool_dir);
    // Connected now, not on the first request.
    this.redis = createRedis({ url: config.redis.url, commandTimeoutMs: config.redis.timeout_ms });
    this.startReplay();
    this.sweeper = this.sharedSweeper();
    setTimeout(
      () =>
        void estimates().then((m) => {
          m.loadEncodings();
          m.warmCountPool();
        }),
      0,
    ).unref();
  }

  /**
   * The client, given up to one command deadline to finish connecting: the first requests
   * after a plugin server starts (or Redis comes back) must not be refused for a connection
   * that is a few milliseconds from ready. Past the deadline, the call fails as unavailable.
   */
  async readyRedis(): Promise<RedisClient> {
    if (!this.redis.isReady) {
      await waitForRedis(this.redis, this.config.redis.timeout_ms).catch(() => undefined);
    }
    return this.redis;
  }

  /** The tenant's metric label (bounded, lib/metrics/registry.ts). */
  label(tenant: TenantId): string {
    return metrics.tenantLabels(this.config.metrics_max_tenants).label(tenant);
  }

  /** Reservations billed by expiry: counted per tenant (the ledger has each entry). */
  countExpired(tenant: TenantId, settled: number): void {
    metrics.expiredSettlements.inc({ tenant: this.label(tenant) }, settled);
  }

  /** TTL of a period's keys: to its end, plus the ledger retention. */
  keyTtlMs(periodEndMs: number, now: number): number {
    return Math.max(1000, periodEndMs - now) + this.config.ledger_retention_days * 86_400_000;
  }

  private startReplay(): void {
    if (replayTimer) return;
    const run = async (): Promise<void> => {
      if (this.spool.pending().length === 0) return;
      const r = await this.spool.replay(spoolSettler(this.redis, this.keys));
      metrics.replayed.inc({ result: 'settled' }, r.settled);
      metrics.replayed.inc({ result: 'duplicate' }, r.duplicate);
      metrics.replayed.inc({ result: 'failed' }, r.failed);
      metrics.replayed.inc({ result: 'corrected' }, r.corrected);
    };
    replayTimer = setInterval(() => {
      run().catch((e: unknown) => notify(`token-meter: replay failed: ${String(e)}`));
    }, this.config.replay_interval_seconds * 1000);
    replayTimer.unref();
  }

  private sharedSweeper(): ExpirySweeper {
    const c = this.config;
    const k = `${c.redis.url}\u0000${c.redis.key_namespace}`;
    let sweeper = sweepers.get(k);
    if (!sweeper) {
      sweeper = new ExpirySweeper({
        redis: () => this.redis,
        keys: this.keys,
        reservationTtlMs: c.reservation_ttl_seconds * 1000,
        minTtlMs: c.ledger_retention_days * 86_400_000,
        intervalMs: c.expiry_sweep_interval_seconds * 1000,
        onSettled: (tenant, r) => this.countExpired(tenant, r.settled),
        hold: () => this.spool.pending().length > 0,
        onError: (e) => notify(`token-meter: sweep of expired reservations failed: ${String(e)}`),
      });
      sweepers.set(k, sweeper);
      sweeper.start();
    }
    return sweeper;
  }
}

export type StartUp = KitStartUp<Ready>;

/** The instance's start-up: ready, or why not (the plugin kit keeps a throw as the reason). */
export function startUp(raw: unknown): StartUp {
  return startUpOf(() => new Ready(readConfig(Schema, raw)));
}
