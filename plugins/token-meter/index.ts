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
import { guardPhase } from '../../lib/plugin/phase';
import { readRequest } from '../../lib/tenant/read';
import * as metrics from './metrics';
import { startUp, type StartUp } from './ready';
import { MISCONFIGURED } from './refusals';
import { meter } from './reserve';
import { Schema } from './schema';
import { settle } from './settle';
import { answerShowback, showbackAsked } from './showback';
import { PLUGIN_NAME } from './state';

export const Name = PLUGIN_NAME;
export const Version = '0.1.0';
/** After tenant-cache (900: a cache hit never reaches us), before retrieval-injector (700). */
export const Priority = 800;
export { Schema };

export class Plugin {
  private readonly start: StartUp;

  /** Never throws past Kong's schema: an unusable config refuses each request instead. */
  constructor(raw: unknown) {
    this.start = startUp(raw);
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(
      kong,
      Name,
      'access',
      async (k) => {
        if (!this.start.ok) {
          void k.log.err(`token-meter is misconfigured, refusing: ${this.start.reason}`);
          throw MISCONFIGURED;
        }
        const ready = this.start.ready;
        const request = await readRequest(k, Name);
        const method = await request.scope.method(k);
        if (method === 'POST') return meter(ready, k, request);
        if ((method === 'GET' || method === 'HEAD') && ready.config.showback) {
          const asked = showbackAsked(await request.scope.pathWithQuery(k));
          if (asked) await answerShowback(ready, k, request.tenant.tenantId, asked);
        }
      },
      { onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }) },
    );
  }

  async log(kong: unknown): Promise<void> {
    const start = this.start;
    await guardPhase(
      kong,
      Name,
      'log',
      // A misconfigured instance reserved nothing, so it has nothing to settle.
      async (k) => (start.ok ? settle(start.ready, k) : undefined),
      { afterResponse: true },
    );
  }
}
