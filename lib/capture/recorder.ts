/**
 * token-meter's half of a capture (issue 23): in the log phase — after the response has left,
 * off the request's path — the drafted request (draft.ts) gets its outcome, is sealed under
 * the tenant's key and stored in the tenant's keyspace with a TTL (store.ts). The Redis write
 * is not awaited by anything: a failure is counted (`token_meter_captures_total`), never
 * answered, and a request whose tenant did not opt in costs nothing here (chain process) or
 * one `ctx.shared` read (one process per plugin).
 *
 * The outcome comes from one `kong.log.serialize()` (request id, method and path as sent,
 * status, the response headers the chain set, the usage the usage snippet recorded) and one
 * `ctx.shared` read of the answer the answer snippet kept.
 */
import { TenantLabels } from '../metrics/registry';
import type { KongPdk } from '../pdk/kong';
import type { RedisClient } from '../redis/client';
import type { Keyspace } from '../redis/keys';
import { isChainProcess } from '../request/scope-store';
import type { TenantRequest } from '../tenant/read';
import { CaptureKeyring, loadCaptureSecret } from './crypto';
import { CAPTURE_ANSWER_KEY, CAPTURE_DRAFT_SLOT, CAPTURE_FLAG_KEY, CAPTURE_HOLDER } from './draft';
import * as metrics from './metrics';
import {
  CAPTURE_RECORD_VERSION,
  decodeDraft,
  readAnswer,
  type CaptureDraft,
  type CaptureRecord,
  type CapturedOutcome,
  type CapturedUsage,
} from './record';
import type { CaptureConfig } from './schema';
import { storeCapture } from './store';
import { notify } from '../pdk/notices';

export type { CaptureConfig } from './schema';

/** token-meter's `capture` config record. */
/** The keyring of each secret source, loaded once per process (null: no secret). */
const keyrings = new Map<string, CaptureKeyring | null>();

function keyringFor(cfg: CaptureConfig, warn: (line: string) => void): CaptureKeyring | null {
  const id = `${cfg.secret_env}\u0000${cfg.secret_file ?? ''}`;
  if (keyrings.has(id)) return keyrings.get(id) ?? null;
  let ring: CaptureKeyring | null = null;
  try {
    ring = new CaptureKeyring(loadCaptureSecret({ env: cfg.secret_env, file: cfg.secret_file }));
  } catch (e) {
    warn(`capture: disabled, ${e instanceof Error ? e.message : String(e)}`);
  }
  keyrings.set(id, ring);
  return ring;
}

let labels: TenantLabels | undefined;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function headerValue(headers: unknown, name: string): string | null {
  if (!isObj(headers)) return null;
  const v = headers[name];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return null;
}

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function usageOf(v: unknown): CapturedUsage | null {
  if (!isObj(v)) return null;
  return {
    promptTokens: count(v.prompt_tokens),
    completionTokens: count(v.completion_tokens),
    totalTokens: count(v.total_tokens),
    cachedTokens: count(v.cached_tokens),
  };
}

/** The draft this request left, or undefined (not opted in, or lost with a restarted process). */
async function takeDraft(
  kong: KongPdk,
  request: TenantRequest,
): Promise<{ draft: CaptureDraft | undefined; release(): void }> {
  const { scope } = request;
  const kept = scope.get(CAPTURE_DRAFT_SLOT);
  if (kept) return { draft: kept, release: () => scope.release(CAPTURE_HOLDER) };
  // In the chain process a draft would be in the scope: none there means none at all.
  if (isChainProcess() && scope.findable) return { draft: undefined, release: () => undefined };
  return {
    draft: decodeDraft(await kong.ctx.shared.get(CAPTURE_FLAG_KEY)),
    release: () => undefined,
  };
}

/**
 * The hook in token-meter's log phase, once the tenant is known. Never throws, never waits for
 * Redis.
 */
export async function recordCapture(
  kong: KongPdk,
  request: TenantRequest,
  cfg: CaptureConfig,
  keys: Keyspace,
  redis: RedisClient,
  maxTenantLabels: number,
): Promise<void> {
  const ctx = request.tenant;
  let tenantLabel = '';
  let result = 'failed';
  try {
    const { draft, release } = await takeDraft(kong, request);
    if (!draft) return;
    release();
    labels ??= new TenantLabels(maxTenantLabels);
    tenantLabel = labels.label(ctx.tenantId);
    const keyring = keyringFor(cfg, (line) => void kong.log.err(line));
    if (!keyring) {
      result = 'no_secret';
      return;
    }
    const serialized = JSON.parse(String(await kong.log.serialize())) as Obj;
    const answerRaw = await kong.ctx.shared.get(CAPTURE_ANSWER_KEY);
    const req = isObj(serialized.request) ? serialized.request : {};
    const res = isObj(serialized.response) ? serialized.response : {};
    const requestId = typeof req.id === 'string' ? req.id : '';
    if (requestId === '') throw new Error('no request id in the serializer');

    const answerText = typeof answerRaw === 'string' ? answerRaw : '';
    const cutBySnippet = answerText.startsWith('cut;');
    const answer = readAnswer(answerText.replace(/^(all|cut);/, ''));
    const text = answer.text;
    const tooLong = text !== null && text.length > cfg.max_answer_chars;
    const headers = res.headers;
    const outcome: CapturedOutcome = {
      status: typeof res.status === 'number' ? res.status : 0,
      modelRequested: headerValue(headers, 'x-model-requested') ?? ctx.model?.requested ?? null,
      modelServed:
        headerValue(headers, 'x-model-served') ?? ctx.model?.served ?? answer.model ?? null,
      cacheStatus: headerValue(headers, 'x-cache-status'),
      budgetState: headerValue(headers, 'x-budget-state'),
      usage: usageOf(serialized.llm_usage),
      stream: answer.stream,
      answer: tooLong ? text.slice(0, cfg.max_answer_chars) : text,
      errorCode: answer.errorCode,
      answerTruncated: cutBySnippet || tooLong,
    };
    const omitted = draft.bodyBytes > cfg.max_body_bytes;
    const record: CaptureRecord = {
      v: CAPTURE_RECORD_VERSION,
      tenant: ctx.tenantId,
      plan: ctx.plan,
      requestId,
      capturedAt: Date.now(),
      request: {
        method: typeof req.method === 'string' ? req.method : 'GET',
        path: typeof req.uri === 'string' ? req.uri : '/',
        ...draft,
        ...(omitted ? { body: null } : {}),
      },
      bodyOmitted: omitted ? 'too_large' : null,
      outcome,
    };
    const label = tenantLabel;
    // Off the request's path: the log phase ends now; the write finishes (or fails) on its own.
    void storeCapture(redis, keys, keyring, ctx.tenantId, record, cfg.ttl_seconds).then(
      () => metrics.captures.inc({ tenant: label, result: omitted ? 'body_omitted' : 'stored' }),
      (e: unknown) => {
        metrics.captures.inc({ tenant: label, result: 'failed' });
        // The phase is over: Kong's log is out of reach (a PDK call now would never settle).
        notify(`capture: not stored: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
    result = '';
  } catch (e) {
    void kong.log.warn(`capture: not recorded: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    if (result !== '' && tenantLabel !== '') {
      metrics.captures.inc({ tenant: tenantLabel, result });
    }
  }
}
