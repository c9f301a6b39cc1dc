/**
 * tenant-ratelimit: performance isolation between tenants. Per-tenant limits (requests and
 * LLM tokens per minute, a concurrency cap) enforced cluster-wide in Redis, and weighted fair
 * queuing of the shared upstream's capacity, so one tenant's flood cannot raise another
 * tenant's latency. Runs right after tenant-auth; refuses to run without its TenantContext.
 *
 * Its PDK calls per request are stated once, in the README ("Cost on the request path"), and
 * held there by test/harness/tenant-ratelimit-pdk-calls.test.ts.
 * Redis round trips (tenant_ratelimit_redis_round_trips_total, by phase), each a batch of
 * scripts written together on the one connection:
 *   access: 1 (tenant limits + fair-queue acquire together; the limits alone without a queue)
 *           + 1 when the limits refuse and a ticket was taken (its cancel)
 *   queue:  1 per poll while waiting, 1 for the claim of an announced grant, 1 to give up
 *           (a flex request waiting for its tenant's limits: 1 per retry, then 1 acquire)
 *   log:    1 (settle + release); 2 when the queue was busy, the tenant has a tokens limit
 *           and the upstream none: the seat then goes back before the usage is read
 * So the unqueued path (a free seat, nobody waiting) is 2: access 1, log 1.
 * With circuit-breaker on the route in the co-hosted chain process, the seat is left for it
 * (lib/request/seat.ts): access sends the limits alone, circuit-breaker's access the acquire
 * (and any wait): 3 on the unqueued path, none for the seat on a cache hit.
 *
 * This file holds the phases only; each concept is a file beside it (README, "Code layout").
 */
import type { ServiceClass } from '../../lib/redis/fair-queue';
import { definePlugin } from '../../lib/plugin/define';
import type { KongPdk } from '../../lib/pdk/kong';
import { takeForLog } from '../../lib/request/for-log';
import { readRequest } from '../../lib/tenant/read';
import { loadEncodings } from '../../lib/tokens/estimate';
import { admit } from './admission';
import * as metrics from './metrics';
import { startUp, type Ready } from './ready';
import { releaseRecord } from './release';
import { Schema } from './schema';
import { PLUGIN_NAME, RECORD } from './state';

/** What a refusal's metrics name: the tenant and the service class, as far as access got. */
interface Note {
  tenantLabel: string;
  classOf: { value: ServiceClass | 'none' };
}

// The BPE vocabularies (~0.7 s of CPU) are built when the plugin server loads this module,
// before it listens: built later, from a constructor or the first request, they block the
// event loop while the first requests' Redis commands run against their timeout (503s).
loadEncodings();

export const { Name, Version, Priority, Plugin } = definePlugin<Ready, Note>({
  name: PLUGIN_NAME,
  version: '0.1.0',
  /** Right after tenant-auth (1100), before the cache (900) and token-meter (800). */
  priority: 1000,
  schema: Schema,
  startUp,
  metricsAt: (r) => ({ port: r.config.metrics_port, host: r.config.metrics_host }),
  note: () => ({ tenantLabel: '', classOf: { value: 'none' } }),
  async access(ready, kong, note) {
    const { tenant: ctx, scope } = await readRequest(kong, PLUGIN_NAME);
    note.tenantLabel = ready.label(ctx.tenantId);
    await admit(ready, kong, scope, ctx, note.tenantLabel, note.classOf);
  },
  onRefusal: (e, note) =>
    metrics.rejected.inc({
      tenant: note.tenantLabel || 'none',
      class: note.classOf.value,
      reason: e.code,
    }),
  // One process per plugin; in the co-hosted chain the release runs in tenant-auth's log.
  log: release,
});
export { Schema };
/** What access leaves in kong.ctx.shared for log (versioned JSON, state.ts). */
export { RECORD_KEY } from './state';

async function release(ready: Ready, kong: KongPdk): Promise<void> {
  const taken = await takeForLog(kong, RECORD);
  try {
    await releaseRecord(ready, kong, taken.record);
  } finally {
    taken.done();
  }
}
