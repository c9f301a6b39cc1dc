/**
 * tenant-cache: an exact-match response cache whose every key holds the tenant, with cached
 * bodies encrypted under a per-tenant key. Hits are answered from `access` with
 * `kong.response.exit`; a cacheable miss turns on response buffering for that request only and
 * is stored from `log`. No `response` method: streams are never buffered by this plugin.
 * Redis down or slow is a miss (with a metric), never an error and never a wrong answer.
 * The semantic cache (semantic/, off by default) looks up after an exact miss, under its own
 * deadline (a hit exits like an exact hit, with `X-Cache-Match: semantic`); its scope and
 * question ride in the same pending store to log.
 *
 * This file holds the phases only; each concept is a file beside it, and the PDK calls of each
 * request shape are stated once, in the README ("Code layout", "PDK calls per phase").
 */
import { CACHE_STATUS_KEY, CACHE_STATUS_SLOT, type CacheStatus } from '../../lib/cache/status';
import { guardPhase } from '../../lib/plugin/phase';
import { leaveForLog, takeForLog } from '../../lib/request/for-log';
import { readRequest } from '../../lib/tenant/read';
import { notStored } from './errors';
import { answerHit, decide } from './lookup';
import * as metrics from './metrics';
import { PENDING, PLUGIN_NAME } from './pending';
import { startUp, type StartUp } from './ready';
import { Schema } from './schema';
import { storePending } from './store';

export const Name = PLUGIN_NAME;
export const Version = '0.1.0';
/** After tenant-ratelimit (1000), before token-meter (800). */
export const Priority = 900;
export { Schema };
/** What access leaves for log on a cacheable miss (ctx.shared, versioned JSON, pending.ts). */
export { PENDING_KEY } from './pending';

export class Plugin {
  /** Never throws past the config read: an unusable config (or no secret) bypasses. */
  private readonly state: StartUp;

  constructor(raw: unknown) {
    this.state = startUp(raw);
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'access', async (k) => {
      // Fails closed: no tenant, no cache read, no proxying.
      const { tenant: ctx, scope } = await readRequest(k, Name);
      const tenant = metrics
        .tenantLabels(this.state.config.metrics_max_tenants)
        .label(ctx.tenantId);
      const outcome = await decide(this.state, k, scope, ctx, tenant);
      const reason =
        outcome.status === 'hit'
          ? outcome.match === 'exact'
            ? 'hit'
            : 'semantic'
          : outcome.reason;
      metrics.lookups.inc({ tenant, status: outcome.status, reason });
      await k.ctx.shared.set(CACHE_STATUS_KEY, outcome.status satisfies CacheStatus);
      scope.set(CACHE_STATUS_SLOT, outcome.status);
      if (outcome.status === 'hit') {
        answerHit(k, outcome, tenant);
        return;
      }
      if (outcome.pending) {
        const state = this.state;
        await leaveForLog(k, scope, PENDING, outcome.pending, (lk, pending, sc) =>
          storePending(state, lk, pending, sc),
        );
        await k.service.request.enableBuffering();
      }
      if (this.state.config.status_header) {
        await k.response.setHeader('X-Cache-Status', outcome.status === 'miss' ? 'MISS' : 'BYPASS');
      }
    });
  }

  /** One process per plugin; in the co-hosted chain the store runs in tenant-auth's log. */
  async log(kong: unknown): Promise<void> {
    await guardPhase(kong, Name, 'log', async (k) => {
      // Nothing here may throw (errors.ts): the store catches its own errors.
      let taken;
      try {
        taken = await takeForLog(k, PENDING);
        taken.done();
      } catch (e) {
        await notStored(k, e);
        return;
      }
      if (taken.record) await storePending(this.state, k, taken.record, taken.scope);
    });
  }
}
