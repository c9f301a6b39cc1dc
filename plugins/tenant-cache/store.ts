/**
 * The store of the log phase: the answer to a cacheable miss, written under the key access
 * computed (rebuilt from the pending digest and the TenantContext), when it may be kept:
 * status 200, no `no-store` or `private` from the upstream, a JSON object body within
 * `max_entry_bytes` after decompression, served by the model the request was keyed for
 * (policy.ts). Then the semantic cache's copy, when the plan has it on. Runs in this plugin's
 * own log phase, or in the chain's (tenant-auth's) in the co-hosted process.
 */
import { bodyToBuffer, firstHeader, normaliseHeaderMap, type KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import { readTenantContext } from '../../lib/tenant/read';
import { CACHE_ANSWER_KEY, noteKeptAnswer, readKeptAnswer } from './capture';
import { encodeEntry, type CachedResponse } from './entry';
import { notStored, redisUnavailable } from './errors';
import * as metrics from './metrics';
import { PLUGIN_NAME, type Pending } from './pending';
import { decodeBody, servedModelMatches, upstreamForbidsStore, type SkipReason } from './policy';
import type { Ready, StartUp } from './ready';
import { storeEntry } from './redis';
import { storeSemantic } from './semantic/store';

/** The upstream's JSON content type, kept for the replay; anything else becomes plain JSON. */
function jsonContentType(ct: string | undefined): string {
  return ct && /^application\/json(\s*;\s*charset=[\w-]+)?$/i.test(ct.trim())
    ? ct.trim()
    : 'application/json';
}

/** Stores the answer a miss left pending. Never throws. */
export async function storePending(
  state: StartUp,
  k: KongPdk,
  pending: Pending,
  scope: RequestScope | undefined,
): Promise<void> {
  let tenant = 'unknown';
  try {
    if (!state.ok) return;
    const ready = state.ready;
    const ctx = scope?.tenant ?? (await readTenantContext(k, PLUGIN_NAME));
    tenant = metrics.tenantLabels(ready.config.metrics_max_tenants).label(ctx.tenantId);
    const stored = await writeEntry(ready, k, ctx, pending, tenant);
    const outcome = typeof stored === 'string' ? stored : 'stored';
    metrics.stores.inc({ tenant, outcome });
    if (typeof stored !== 'string' && pending.s) {
      await storeSemantic(ready, ctx, tenant, pending.s, pending.ttl, stored);
    }
  } catch (e) {
    metrics.stores.inc({ tenant, outcome: 'error' satisfies SkipReason });
    await notStored(k, e);
  }
}

/** The answer as stored, or why it was not. */
async function writeEntry(
  ready: Ready,
  k: KongPdk,
  ctx: TenantContext,
  pending: Pending,
  tenant: string,
): Promise<SkipReason | CachedResponse> {
  // In log these read the snapshot Kong saved (plugin_servers/plugin.lua): safe in the timer.
  if ((await k.response.getStatus()) !== 200) return 'status';
  // Only the upstream's own answer: where Kong answered in its place (an answer the upstream cut
  // after its status line: kong/init.lua keeps the 200 and exits with its error body) there is no
  // buffered body, and asking for it raises in Kong, which ends the whole log event (in the
  // chain's log phase, every entry after this one too).
  if (String(await k.response.getSource()) !== 'service') return 'status';
  const headers = normaliseHeaderMap(await k.response.getHeaders());
  if (upstreamForbidsStore(headers)) return 'no_store';
  // The answer kept as it passed (capture.ts), else Kong's buffered body when access buffered.
  const kept = readKeptAnswer(await k.ctx.shared.get(CACHE_ANSWER_KEY));
  let raw: Buffer;
  if (kept) {
    noteKeptAnswer(ready, pending.rt ?? '', true);
    if (kept.kind === 'cut') return 'too_large';
    raw = kept.bytes;
  } else if (pending.b === 1) {
    raw = bodyToBuffer(await k.service.response.getRawBody());
  } else {
    // Asked for and not kept: the route lost kong.yml's snippet. Buffer again from the next miss.
    noteKeptAnswer(ready, pending.rt ?? '', false);
    return 'no_answer';
  }
  const max = ready.config.max_entry_bytes;
  const body = decodeBody(raw, firstHeader(headers, 'content-encoding'), max);
  if (body === 'encoding' || body === 'too_large') return body;
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return 'not_json';
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return 'not_json';
  const served = (json as Record<string, unknown>).model;
  if (!servedModelMatches(pending.m, served)) return 'model_mismatch';

  const redisKey = ready.keyspace.cacheEntry(ctx.tenantId, pending.d);
  const response: CachedResponse = {
    createdAt: Date.now(),
    contentType: jsonContentType(firstHeader(headers, 'content-type')),
    model: served as string,
    body: text,
  };
  const value = encodeEntry(
    ready.keyring.forTenant(ctx),
    redisKey,
    { knowledge: pending.kg, cache: pending.cg },
    response,
  );
  try {
    await storeEntry(ready.redis, redisKey, value, pending.ttl);
  } catch (e) {
    redisUnavailable(e, 'store');
    return 'redis_unavailable';
  }
  metrics.storedBytes.inc({ tenant }, body.length);
  return response;
}
