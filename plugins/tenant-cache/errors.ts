/**
 * What tenant-cache does when something goes wrong. It refuses nothing of its own (a request
 * without a TenantContext is refused by lib/tenant/read.ts): an unusable config bypasses, an
 * unavailable Redis is a miss, an entry or a semantic row that fails authentication is an
 * alarm (a metric and an error log line) served as a miss, and a store that fails is logged
 * and skipped. Log must never throw: an error there would reach guardPhase, whose refusal
 * (kong.response.exit) is a Lua error after the response was sent.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { TenantId } from '../../lib/tenant/tenant-id';
import * as metrics from './metrics';

/** Counts an unavailable Redis (the caller carries on as a miss); rethrows anything else. */
export function redisUnavailable(e: unknown, op: 'lookup' | 'store'): void {
  if (!isRedisUnavailable(e)) throw e;
  metrics.redisFailures.inc({ op });
}

/** An entry under the tenant's key that does not open: planted, moved or tampered with. */
export async function entryAlarm(k: KongPdk, tenant: string, tenantId: TenantId): Promise<void> {
  metrics.decryptAlarms.inc({ tenant });
  await k.log.err(
    `tenant-cache: ALARM: an entry under tenant ${tenantId}'s key failed authentication; served as a miss`,
  );
}

/** A semantic row of another tenant or scope, or one that does not open. */
export async function semanticAlarm(k: KongPdk, tenant: string, detail: string): Promise<void> {
  metrics.decryptAlarms.inc({ tenant });
  await k.log.err(`tenant-cache: ALARM: semantic cache: ${detail}; served as a miss`);
}

/** Logs why a store did not happen; never throws. */
export async function notStored(k: KongPdk, e: unknown): Promise<void> {
  const detail = e instanceof Error ? e.message : String(e);
  await k.log.err(`tenant-cache log: not stored: ${detail}`).catch(() => undefined);
}
