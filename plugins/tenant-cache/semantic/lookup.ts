/**
 * The semantic cache on the request path, after an exact miss: the request's question, and
 * the tenant's earlier answer to a near-duplicate of it, under the lookup's own deadline.
 * Anything but a verified hit of the tenant's own scope is a miss (null), with a metric;
 * nothing here is an error of the request.
 */
import type { KongPdk } from '../../../lib/pdk/kong';
import type { TenantContext } from '../../../lib/tenant/context';
import type { CachedResponse } from '../entry';
import { semanticAlarm } from '../errors';
import * as metrics from '../metrics';
import type { SemanticPending } from '../pending';
import type { Ready } from '../ready';
import { unavailableOutcome, withinDeadline } from './errors';
import { semanticRequest, type SemanticRequest } from './key';
import { loadSemanticStore, semanticStoreFor } from './runtime';

/** The question to compare, or null (counted) when the request has none that can be. */
export function semanticQuestion(
  ready: Ready,
  body: Record<string, unknown>,
  tenant: string,
): SemanticRequest | null {
  const q = semanticRequest(body, ready.config.semantic.max_question_chars);
  if (typeof q !== 'string') return q;
  metrics.semanticLookups.inc({ tenant, outcome: q });
  return null;
}

/** The tenant's earlier answer in scope `s.sc` to a question like `s.q`, or null. */
export async function semanticHit(
  ready: Ready,
  k: KongPdk,
  ctx: TenantContext,
  tenant: string,
  s: SemanticPending,
  threshold: number,
): Promise<CachedResponse | null> {
  const c = ready.config.semantic;
  const keys = ready.keyring.forTenant(ctx);
  let result;
  const stop = metrics.semanticLookupSeconds.startTimer({ tenant });
  try {
    await loadSemanticStore();
    result = await withinDeadline(
      (async () => {
        const store = await semanticStoreFor(c, ready.redis, ready.keyspace);
        return store.lookup(ctx, keys, s.sc, s.q, threshold, Date.now());
      })(),
      c.lookup_timeout_ms,
      'semantic lookup',
    );
  } catch (e) {
    metrics.semanticLookups.inc({ tenant, outcome: unavailableOutcome(e) });
    return null;
  } finally {
    stop();
  }
  if (result.similarity !== null) {
    metrics.semanticSimilarity.observe({ tenant }, result.similarity);
  }
  switch (result.kind) {
    case 'hit':
      metrics.semanticLookups.inc({ tenant, outcome: 'hit' });
      return result.response;
    case 'miss':
      metrics.semanticLookups.inc({
        tenant,
        outcome: result.similarity === null ? 'miss' : 'below_threshold',
      });
      return null;
    case 'stale':
      metrics.semanticLookups.inc({ tenant, outcome: 'stale' });
      return null;
    case 'forged':
      metrics.semanticLookups.inc({ tenant, outcome: 'alarm' });
      await semanticAlarm(k, tenant, result.detail);
      return null;
  }
}
