/**
 * The semantic cache in the log phase: the answer the exact cache just stored, kept in the
 * tenant's semantic rows too, under the store's own deadline. Never throws: a failure is
 * counted by its outcome and the exact entry stands alone.
 */
import type { TenantContext } from '../../../lib/tenant/context';
import type { CachedResponse } from '../entry';
import * as metrics from '../metrics';
import type { SemanticPending } from '../pending';
import type { Ready } from '../ready';
import { unavailableOutcome, withinDeadline } from './errors';
import { loadSemanticStore, semanticStoreFor } from './runtime';

export async function storeSemantic(
  ready: Ready,
  ctx: TenantContext,
  tenant: string,
  s: SemanticPending,
  ttlSeconds: number,
  response: CachedResponse,
): Promise<void> {
  const c = ready.config.semantic;
  const keys = ready.keyring.forTenant(ctx);
  await loadSemanticStore();
  try {
    const outcome = await withinDeadline(
      (async () => {
        const store = await semanticStoreFor(c, ready.redis, ready.keyspace);
        return store.store(
          ctx,
          keys,
          s.sc,
          s.q,
          response,
          ttlSeconds,
          c.max_entries_per_tenant,
          Date.now(),
        );
      })(),
      c.store_timeout_ms,
      'semantic store',
    );
    metrics.semanticStores.inc({ tenant, outcome });
  } catch (e) {
    metrics.semanticStores.inc({ tenant, outcome: unavailableOutcome(e) });
  }
}
