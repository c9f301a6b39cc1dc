/**
 * token-meter: every token attributed to its tenant, budgets checked before the call, never a
 * silent overage. In access it reserves the request's worst case in Redis atomically (the
 * ladder: preferred model, plan fallback, clamped max_tokens, or a 429), bounds the request
 * to what it reserved and asks streams for their usage. In log it settles exactly once per
 * request id from the usage Kong's post-function read in body_filter (usage-snippet.lua), and
 * appends the ledger entry; Redis outages spool locally and replay. It also answers the
 * tenant's showback endpoints from its own ledger.
 *
 * Its PDK calls per request are stated once, in the README ("Cost on the request path"), and
 * held there by test/harness/token-meter-pdk-calls.test.ts. This file holds the phases only;
 * each concept is a file beside it (README, "Code layout").
 */
import { postSpends } from '../../lib/http/api-surface';
import { definePlugin } from '../../lib/plugin/define';
import type { KongPdk } from '../../lib/pdk/kong';
import { readRequest } from '../../lib/tenant/read';
import * as metrics from './metrics';
import { startUp, type Ready } from './ready';
import { unmeteredTraining } from './refusals';
import { meter } from './reserve';
import { Schema } from './schema';
import { settle } from './settle';
import { answerShowback, showbackAsked } from './showback';
import { METER_STATE_KEY, METER_STATE_NONE, PLUGIN_NAME } from './state';

export const { Name, Version, Priority, Plugin } = definePlugin<Ready>({
  name: PLUGIN_NAME,
  version: '0.1.0',
  /** After tenant-cache (900: a cache hit never reaches us), before retrieval-injector (790). */
  priority: 800,
  schema: Schema,
  startUp,
  metricsAt: (r) => ({ port: r.config.metrics_port, host: r.config.metrics_host }),
  access,
  onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
  // A misconfigured instance reserved nothing, so the kit does not call this for it.
  log: settle,
});
export { Schema };

/** The batch meter, loaded on the first batch call (batch/meter.ts). */
let batchMeter: Promise<typeof import('./batch/meter')> | undefined;
const batches = () => (batchMeter ??= import('./batch/meter'));

async function access(ready: Ready, kong: KongPdk): Promise<void> {
  const request = await readRequest(kong, PLUGIN_NAME);
  const method = await request.scope.method(kong);
  if (method === 'POST') {
    // A cancel or a conversation's items spend nothing; a batch is reserved at creation from
    // its input file, read at upload (batch/meter.ts); a fine-tuning job spends later, where no
    // reservation can come first: refused rather than let through unmetered.
    const uri = await request.scope.upstreamUri(kong);
    const spends = postSpends(uri);
    if (spends === 'batch' || spends === 'none') {
      const b = await batches();
      const call = b.batchCall(method, uri);
      if (call) return b.meterBatchCall(ready, kong, request, call);
    }
    if (spends === 'none') {
      // Said, so kong.yml's chain guard knows the meter ran (and found nothing to reserve).
      await kong.ctx.shared.set(METER_STATE_KEY, METER_STATE_NONE);
      return;
    }
    if (spends === 'training') throw unmeteredTraining();
    return meter(ready, kong, request);
  }
  if (method === 'GET') {
    // A read of a batch: the finished batch settles its reservation (noted here by
    // batch/meter.ts, settled at log by batch/settle.ts from the provider's answer). The
    // client's path, read for showback anyway; a spelling it misses leaves the reservation to
    // a later read or to its expiry at the bound, never unbilled.
    const path = await request.scope.pathWithQuery(kong);
    if (/\/batches\/[^/?]+\/?(\?|$)/i.test(path)) {
      const b = await batches();
      const call = b.batchCall(method, path);
      if (call) return b.meterBatchCall(ready, kong, request, call);
    }
  }
  if ((method === 'GET' || method === 'HEAD') && ready.config.showback) {
    const asked = showbackAsked(await request.scope.pathWithQuery(kong));
    if (asked) await answerShowback(ready, kong, request.tenant.tenantId, asked);
  }
}
