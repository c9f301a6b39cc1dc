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
import type { KongPdk } from '../../lib/pdk/kong';
import { definePlugin } from '../../lib/plugin/define';
import { leaveForLog, takeForLog } from '../../lib/request/for-log';
import { readRequest } from '../../lib/tenant/read';
import { CACHE_CAPTURE_KEY, routeKeepsAnswers } from './capture';
import { notStored } from './errors';
import { answerHit, decide, startEarly } from './lookup';
import * as metrics from './metrics';
import { PENDING, PLUGIN_NAME } from './pending';
import { startUp, type StartUp } from './ready';
import { Schema } from './schema';
import { storePending } from './store';

export const { Name, Version, Priority, Plugin } = definePlugin<StartUp>({
  name: PLUGIN_NAME,
  version: '0.1.0',
  /** After tenant-ratelimit (1000), before token-meter (800). */
  priority: 900,
  schema: Schema,
  // Never a misconfiguration to the kit: an unusable config (or no secret) bypasses (ready.ts).
  startUp: (raw) => ({ ok: true, ready: startUp(raw) }),
  metricsAt: (s) =>
    s.ok ? { port: s.config.metrics_port, host: s.config.metrics_host } : { port: 0, host: '' },
  access,
  // In the co-hosted chain: the exact lookup starts before tenant-ratelimit's admission.
  early: (state, kong) =>
    startEarly(state, kong, (id) =>
      metrics.tenantLabels(state.config.metrics_max_tenants).label(id),
    ),
  // One process per plugin; in the co-hosted chain the store runs in tenant-auth's log.
  log,
});
export { Schema };
/** What access leaves for log on a cacheable miss (ctx.shared, versioned JSON, pending.ts). */
export { PENDING_KEY } from './pending';

async function access(state: StartUp, kong: KongPdk): Promise<void> {
  // Fails closed: no tenant, no cache read, no proxying.
  const { tenant: ctx, scope } = await readRequest(kong, PLUGIN_NAME);
  const tenant = metrics.tenantLabels(state.config.metrics_max_tenants).label(ctx.tenantId);
  const outcome = await decide(state, kong, scope, ctx, tenant);
  const reason =
    outcome.status === 'hit' ? (outcome.match === 'exact' ? 'hit' : 'semantic') : outcome.reason;
  metrics.lookups.inc({ tenant, status: outcome.status, reason });
  await kong.ctx.shared.set(CACHE_STATUS_KEY, outcome.status satisfies CacheStatus);
  scope.set(CACHE_STATUS_SLOT, outcome.status);
  if (outcome.status === 'hit') {
    answerHit(kong, outcome, tenant);
    return;
  }
  if (outcome.pending && state.ok) {
    // The answer is kept as it passes (capture.ts); buffered by Kong only until this
    // instance has seen its route keep one.
    const buffered = !routeKeepsAnswers(state.ready, outcome.pending.rt ?? '');
    metrics.missAnswers.inc({ source: buffered ? 'buffered' : 'kept' });
    const pending = buffered ? { ...outcome.pending, b: 1 as const } : outcome.pending;
    await leaveForLog(kong, scope, PENDING, pending, (lk, p, sc) => storePending(state, lk, p, sc));
    await kong.ctx.shared.set(CACHE_CAPTURE_KEY, String(state.config.max_entry_bytes));
    if (buffered) await kong.service.request.enableBuffering();
  }
  if (state.config.status_header) {
    await kong.response.setHeader('X-Cache-Status', outcome.status === 'miss' ? 'MISS' : 'BYPASS');
  }
}

async function log(state: StartUp, kong: KongPdk): Promise<void> {
  // Nothing here may throw (errors.ts): the store catches its own errors.
  let taken;
  try {
    taken = await takeForLog(kong, PENDING);
    taken.done();
  } catch (e) {
    await notStored(kong, e);
    return;
  }
  if (taken.record) await storePending(state, kong, taken.record, taken.scope);
}
