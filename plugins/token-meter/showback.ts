/**
 * Showback: a tenant reads its own usage and costs through the gateway, in the shape of
 * OpenAI's organization Usage and Costs APIs (so existing tooling reads it):
 *   GET /v1/organization/usage/completions?start_time=&end_time=&bucket_width=1m|1h|1d&group_by=model,batch&limit=
 *   GET /v1/organization/costs?start_time=&end_time=&bucket_width=1d&group_by=line_item&limit=
 * The tenant comes from the TenantContext only: no parameter names a tenant or a project.
 */
import { normalisePath } from '../../lib/http/path';
import type { KongPdk } from '../../lib/pdk/kong';
import { isRedisUnavailable } from '../../lib/redis/errors';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { readLedger, type StoredLedgerEntry } from './ledger';
import { periodAt, periodsBetween } from './period';
import { nanoUsdToUsd } from './pricing';
import type { Ready } from './ready';
import { invalidRequest, ledgerUnavailable } from './refusals';

export const USAGE_PATH = '/v1/organization/usage/completions';
export const COSTS_PATH = '/v1/organization/costs';
/** The endpoints below the API's base path (`/v1`), as the route may prefix them. */
const USAGE_SUFFIX = USAGE_PATH.slice('/v1'.length);
const COSTS_SUFFIX = COSTS_PATH.slice('/v1'.length);

export type ShowbackKind = 'usage' | 'costs';

export interface ShowbackQuery {
  readonly kind: ShowbackKind;
  readonly startMs: number;
  readonly endMs: number;
  readonly bucketMs: number;
  readonly groupByModel: boolean;
  /** Usage only: results split by whether they came from a batch (OpenAI's `group_by=batch`). */
  readonly groupByBatch: boolean;
}

const BUCKETS: Record<string, { ms: number; defLimit: number; maxLimit: number }> = {
  '1m': { ms: 60_000, defLimit: 60, maxLimit: 1440 },
  '1h': { ms: 3_600_000, defLimit: 24, maxLimit: 168 },
  '1d': { ms: 86_400_000, defLimit: 7, maxLimit: 31 },
};

const bad = (message: string, param: string) =>
  invalidRequest('invalid_showback_query', message, param);

/**
 * The showback endpoint a request path names, or undefined. Decided on the path as Kong
 * normalises it for the upstream (`/v1//organization/costs`, `/v1/x/../organization/costs`,
 * `%63osts` are what Kong proxies as `/v1/organization/costs`), in any case and under any
 * route prefix, as tenant-auth's API surface matches `showback` (lib/http/api-surface.ts): a
 * request the gate lets through as showback is answered here, never by the provider.
 */
export function showbackKind(rawPath: string): ShowbackKind | undefined {
  const p = normalisePath(rawPath).replace(/\/+$/, '').toLowerCase();
  if (p.endsWith(USAGE_SUFFIX)) return 'usage';
  if (p.endsWith(COSTS_SUFFIX)) return 'costs';
  return undefined;
}

export function parseShowbackQuery(kind: ShowbackKind, rawQuery: string): ShowbackQuery {
  const q = new URLSearchParams(rawQuery);
  const startRaw = q.get('start_time');
  if (startRaw === null || !/^\d{1,11}$/.test(startRaw)) {
    throw bad('start_time (Unix seconds) is required', 'start_time');
  }
  const width = q.get('bucket_width') ?? '1d';
  const bucket = BUCKETS[width];
  if (!bucket || (kind === 'costs' && width !== '1d')) {
    throw bad(
      kind === 'costs' ? 'bucket_width must be 1d' : 'bucket_width must be 1m, 1h or 1d',
      'bucket_width',
    );
  }
  const limitRaw = q.get('limit');
  const limit = limitRaw === null ? bucket.defLimit : Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > bucket.maxLimit) {
    throw bad(`limit must be between 1 and ${bucket.maxLimit}`, 'limit');
  }
  const startMs = Math.floor((Number(startRaw) * 1000) / bucket.ms) * bucket.ms;
  const endRaw = q.get('end_time');
  if (endRaw !== null && !/^\d{1,11}$/.test(endRaw))
    throw bad('end_time must be Unix seconds', 'end_time');
  const endWanted = endRaw === null ? Infinity : Number(endRaw) * 1000;
  const endMs = Math.min(endWanted, startMs + limit * bucket.ms);
  if (endMs <= startMs) throw bad('end_time must be after start_time', 'end_time');
  const groups = [...q.getAll('group_by'), ...q.getAll('group_by[]')].flatMap((g) => g.split(','));
  const groupKey = kind === 'usage' ? 'model' : 'line_item';
  const known = kind === 'usage' ? [groupKey, 'batch', 'project_id'] : [groupKey, 'project_id'];
  for (const g of groups) {
    if (!known.includes(g)) {
      const what = kind === 'usage' ? 'model and batch' : groupKey;
      throw bad(`group_by supports ${what} (and project_id, always null here)`, 'group_by');
    }
  }
  return {
    kind,
    startMs,
    endMs,
    bucketMs: bucket.ms,
    groupByModel: groups.includes(groupKey),
    groupByBatch: kind === 'usage' && groups.includes('batch'),
  };
}

interface Sums {
  input: number;
  output: number;
  cached: number;
  requests: number;
  cost: number;
}

/** The page answering the query from the tenant's ledger entries. */
export function showbackPage(q: ShowbackQuery, entries: readonly StoredLedgerEntry[]): unknown {
  const buckets: Array<{ start: number; groups: Map<string, Sums> }> = [];
  for (let s = q.startMs; s < q.endMs; s += q.bucketMs)
    buckets.push({ start: s, groups: new Map() });
  for (const e of entries) {
    if (e.ts < q.startMs || e.ts >= q.endMs) continue;
    const b = buckets[Math.floor((e.ts - q.startMs) / q.bucketMs)];
    if (!b) continue;
    const key = `${q.groupByModel ? e.modelServed : ''}\n${q.groupByBatch && e.batchId ? 'b' : ''}`;
    const sums = b.groups.get(key) ?? { input: 0, output: 0, cached: 0, requests: 0, cost: 0 };
    sums.input += e.promptTokens;
    sums.output += e.completionTokens;
    sums.cached += e.cachedTokens;
    sums.cost += e.cost;
    if (!e.cacheHit) sums.requests += 1;
    b.groups.set(key, sums);
  }
  const data = buckets.map((b) => ({
    object: 'bucket',
    start_time: Math.floor(b.start / 1000),
    end_time: Math.floor(Math.min(b.start + q.bucketMs, q.endMs) / 1000),
    results: [...b.groups.entries()].map(([key, s]) => {
      const [model = '', batch = ''] = key.split('\n');
      return q.kind === 'usage'
        ? {
            object: 'organization.usage.completions.result',
            input_tokens: s.input,
            output_tokens: s.output,
            input_cached_tokens: s.cached,
            input_audio_tokens: 0,
            output_audio_tokens: 0,
            num_model_requests: s.requests,
            project_id: null,
            user_id: null,
            api_key_id: null,
            model: q.groupByModel ? model : null,
            batch: q.groupByBatch ? batch === 'b' : null,
          }
        : {
            object: 'organization.costs.result',
            amount: { value: nanoUsdToUsd(s.cost), currency: 'usd' },
            line_item: q.groupByModel ? model : null,
            project_id: null,
          };
    }),
  }));
  return { object: 'page', data, has_more: false, next_page: null };
}

/** What a GET asks showback for: the endpoint and its query string. */
export interface ShowbackAsk {
  readonly kind: ShowbackKind;
  readonly rawQuery: string;
}

/** The showback a request's path and query ask for, or undefined: not a showback endpoint. */
export function showbackAsked(pathWithQuery: string): ShowbackAsk | undefined {
  const q = pathWithQuery.indexOf('?');
  const kind = showbackKind(q < 0 ? pathWithQuery : pathWithQuery.slice(0, q));
  return kind && { kind, rawQuery: q < 0 ? '' : pathWithQuery.slice(q + 1) };
}

/** Answers the tenant's showback from its own ledger (kong.response.exit, in access). */
export async function answerShowback(
  ready: Ready,
  kong: KongPdk,
  tenant: TenantId,
  asked: ShowbackAsk,
): Promise<void> {
  const { config } = ready;
  const q = parseShowbackQuery(asked.kind, asked.rawQuery);
  const entries = [];
  // Reservations that can still be open are in the current period or, for one TTL after a
  // period's end, the previous one: those are swept first (one script call each), so the page
  // shows a request whose log never ran as soon as its reservation has expired.
  const now = Date.now();
  const open = new Set([
    periodAt(config.period, now).id,
    periodAt(config.period, now - config.reservation_ttl_seconds * 1000).id,
    periodAt(config.period, now - config.batches.reservation_ttl_seconds * 1000).id,
  ]);
  for (const p of periodsBetween(config.period, q.startMs, q.endMs)) {
    try {
      if (open.has(p.id)) await ready.sweeper.sweepNow(tenant, [p.id]);
      const redis = await ready.readyRedis();
      entries.push(...(await readLedger(redis, ready.keys, tenant, p.id, q.startMs, q.endMs)));
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      throw ledgerUnavailable();
    }
  }
  void kong.response.exit(200, JSON.stringify(showbackPage(q, entries)), {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-store',
  });
}
