/**
 * `npm run replay`'s parts (scripts/replay.ts is the command): find and open a capture
 * (tenant-checked), send it again through the front door as configured now, compare the two
 * outcomes, and write the request as an eval case in the format of evals/README.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { CaptureKeyring } from '../../lib/capture/crypto';
import { readAnswer, type CaptureRecord, type CapturedUsage } from '../../lib/capture/record';
import { findCaptureOwner, loadCapture } from '../../lib/capture/store';
import type { RedisClient } from '../../lib/redis/client';
import type { Keyspace } from '../../lib/redis/keys';
import { parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import type { ClientResponse } from '../eval/checks';
import { loadEvalSets, writeCaseFile, type RequestSpec } from '../eval/format';
import { send } from '../eval/run';

export class ReplayError extends Error {
  override readonly name = 'ReplayError';
  constructor(
    message: string,
    /** The command's exit code: 1 nothing to replay, 2 bad input, 3 the front door failed. */
    readonly exitCode: 1 | 2 | 3,
  ) {
    super(message);
  }
}

/**
 * The capture of `requestId`. With `tenant` named, only that tenant's keyspace is read (and
 * only its key opens it); without, the signed owner entry names the tenant. Either way the
 * record opens only under its own tenant's key and request id.
 */
export async function findCapture(
  redis: RedisClient,
  keys: Keyspace,
  keyring: CaptureKeyring,
  requestId: string,
  tenant?: string,
): Promise<{ record: CaptureRecord; ttlSeconds: number }> {
  let owner: TenantId;
  if (tenant !== undefined) {
    try {
      owner = parseTenantId(tenant);
    } catch {
      throw new ReplayError(`not a tenant id: ${JSON.stringify(tenant)}`, 2);
    }
  } else {
    const found = await findCaptureOwner(redis, keys, keyring, requestId);
    if (found.kind === 'forged') {
      throw new ReplayError(
        `the owner entry of request ${requestId} is not signed with this capture secret: refused`,
        1,
      );
    }
    if (found.kind === 'absent') {
      throw new ReplayError(
        `no capture of request ${requestId} (never captured, its tenant did not opt in, or expired)`,
        1,
      );
    }
    owner = found.tenant;
  }
  const loaded = await loadCapture(redis, keys, keyring, owner, requestId);
  if (loaded.kind === 'absent') {
    throw new ReplayError(
      `no capture of request ${requestId} for tenant ${owner} (never captured, another tenant's, or expired)`,
      1,
    );
  }
  if (loaded.kind === 'sealed_elsewhere') {
    throw new ReplayError(
      `the capture of request ${requestId} does not open for tenant ${owner} with this secret: refused`,
      1,
    );
  }
  return { record: loaded.record, ttlSeconds: loaded.ttlSeconds };
}

/** Headers never sent again: the replay's own, per-connection, or tracing/proxy leftovers. */
const NOT_REPLAYED =
  /^(x-kong-request-id|x-eval-case|x-replay-of|accept-encoding|traceparent|tracestate|x-forwarded-.*|x-real-ip|via|forwarded)$/;

/** The captured request as the eval format's request (credentials were never captured). */
export function requestSpecOf(record: CaptureRecord): RequestSpec {
  const r = record.request;
  if (r.body === null && (record.bodyOmitted !== null || r.bodyBytes > 0)) {
    throw new ReplayError(
      `the body of request ${record.requestId} was not kept (${r.bodyBytes} bytes, over capture.max_body_bytes): it cannot be replayed`,
      1,
    );
  }
  const headers: Record<string, string> = {};
  for (const [name, values] of Object.entries(r.headers)) {
    if (!NOT_REPLAYED.test(name)) headers[name] = values.join(', ');
  }
  let body: unknown;
  if (r.body !== null) {
    const text =
      r.bodyEncoding === 'base64' ? Buffer.from(r.body, 'base64').toString('utf8') : r.body;
    try {
      body = JSON.parse(text) as unknown;
    } catch {
      body = text;
    }
  }
  return {
    method: r.method.toUpperCase(),
    path: r.path,
    headers,
    ...(body !== undefined ? { body } : {}),
    auth: 'tenant',
  };
}

/** The tenant's API key for the replay: the environment first, then its eval set's tenant.yaml. */
export function tenantApiKey(
  tenant: string,
  evalsDir: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const suffix = tenant.toUpperCase().replace(/[^A-Z0-9]/g, '_');
  const fromEnv = env[`REPLAY_API_KEY_${suffix}`] ?? env[`EVAL_API_KEY_${suffix}`];
  if (fromEnv) return fromEnv;
  for (const name of ['tenant.yaml', 'tenant.yml']) {
    const file = path.join(evalsDir, tenant, name);
    if (!existsSync(file)) continue;
    const doc = parse(readFileSync(file, 'utf8')) as unknown;
    if (typeof doc === 'object' && doc !== null && 'api_key' in doc) {
      const key = (doc as { api_key?: unknown }).api_key;
      if (typeof key === 'string' && key.length > 0) return key;
    }
  }
  return undefined;
}

/** What a replay got back, in the capture's terms. */
export interface ReplayOutcome {
  readonly requestId: string | null;
  readonly status: number;
  readonly modelRequested: string | null;
  readonly modelServed: string | null;
  readonly cacheStatus: string | null;
  readonly budgetState: string | null;
  readonly usage: CapturedUsage | null;
  readonly stream: boolean;
  readonly answer: string | null;
  readonly errorCode: string | null;
}

function header(r: ClientResponse, name: string): string | null {
  const v = r.headers[name];
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return null;
}

function usageIn(text: string): CapturedUsage | null {
  const candidates = text.trimStart().startsWith('data:')
    ? text
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .reverse()
    : [text];
  for (const c of candidates) {
    try {
      const u = (JSON.parse(c) as { usage?: Record<string, unknown> | null }).usage;
      if (u && typeof u === 'object') {
        const n = (k: string) => (typeof u[k] === 'number' ? (u[k] as number) : 0);
        return {
          promptTokens: n('prompt_tokens'),
          completionTokens: n('completion_tokens'),
          totalTokens: n('total_tokens'),
          cachedTokens: 0,
        };
      }
    } catch {
      // not JSON (the [DONE] event, a cut body)
    }
  }
  return null;
}

export function outcomeOf(r: ClientResponse): ReplayOutcome {
  const a = readAnswer(r.text);
  return {
    requestId: header(r, 'x-kong-request-id'),
    status: r.status,
    modelRequested: header(r, 'x-model-requested'),
    modelServed: header(r, 'x-model-served') ?? a.model,
    cacheStatus: header(r, 'x-cache-status'),
    budgetState: header(r, 'x-budget-state'),
    usage: usageIn(r.text),
    stream: a.stream,
    answer: a.text,
    errorCode: a.errorCode,
  };
}

/** Sends the captured request through the front door with the tenant's own key. */
export async function replay(
  frontDoor: string,
  record: CaptureRecord,
  apiKey: string,
  bypassCache = false,
): Promise<ReplayOutcome> {
  const captured = requestSpecOf(record);
  const spec = bypassCache
    ? { ...captured, headers: { ...captured.headers, 'cache-control': 'no-store' } }
    : captured;
  let r: ClientResponse;
  try {
    r = await send(frontDoor, spec, apiKey, `replay-${record.requestId}`);
  } catch (e) {
    throw new ReplayError(
      `the front door ${frontDoor} did not answer: ${e instanceof Error ? e.message : String(e)}`,
      3,
    );
  }
  return outcomeOf(r);
}

export interface DiffRow {
  readonly field: string;
  readonly captured: string;
  readonly replayed: string;
  readonly same: boolean;
}

const show = (v: unknown): string =>
  v === null || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v);

/** The two outcomes side by side, field by field. */
export function diffOutcomes(record: CaptureRecord, now: ReplayOutcome): DiffRow[] {
  const was = record.outcome;
  const rows: Array<[string, unknown, unknown]> = [
    ['status', was.status, now.status],
    ['error code', was.errorCode, now.errorCode],
    ['model requested', was.modelRequested, now.modelRequested],
    ['model served', was.modelServed, now.modelServed],
    ['cache', was.cacheStatus, now.cacheStatus],
    ['budget', was.budgetState, now.budgetState],
    ['stream', was.stream, now.stream],
    ['prompt tokens', was.usage?.promptTokens, now.usage?.promptTokens],
    ['completion tokens', was.usage?.completionTokens, now.usage?.completionTokens],
    ['answer', was.answer, now.answer],
  ];
  return rows.map(([field, a, b]) => ({
    field,
    captured: show(a),
    replayed: show(b),
    same: show(a) === show(b),
  }));
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function renderDiff(rows: DiffRow[]): string {
  const w = Math.max(...rows.map((r) => r.field.length));
  const cw = Math.max(8, ...rows.map((r) => Math.min(40, r.captured.length)));
  const lines = [
    `${'field'.padEnd(w)}  ${'captured'.padEnd(cw)}  replayed`,
    ...rows.map(
      (r) =>
        `${r.field.padEnd(w)}  ${clip(r.captured, 40).padEnd(cw)}  ${clip(r.replayed, 60)}${r.same ? '' : '   <- changed'}`,
    ),
  ];
  const answer = rows.find((r) => r.field === 'answer');
  if (answer && !answer.same) {
    lines.push(
      '',
      'answer, captured:',
      `  ${answer.captured}`,
      'answer, replayed:',
      `  ${answer.replayed}`,
    );
  }
  return lines.join('\n');
}

/** What a written case expects: the replay's outcome, or the captured one. */
export type ExpectedOutcome = Pick<ReplayOutcome, 'status' | 'errorCode' | 'modelServed'>;

/** The case id a capture gets unless the operator names one. */
export function defaultCaseId(record: CaptureRecord): string {
  return `replay-${record.requestId.slice(0, 16)}`;
}

/**
 * Writes the captured request as a case of the tenant's eval set
 * (`evals/<tenant>/regressions/<id>.yaml`), expecting what `expected` shows: the replay's
 * outcome (the chain as configured now), or the captured one. Review the expectations: a case
 * should state what ought to happen. Creates the tenant's `tenant.yaml` when the set is new.
 */
export function writeEvalCase(
  evalsDir: string,
  record: CaptureRecord,
  expected: ExpectedOutcome,
  opts: { id?: string; source: 'replay' | 'capture' },
): string {
  const spec = requestSpecOf(record);
  const tenantDir = path.join(evalsDir, record.tenant);
  if (
    !['tenant.yaml', 'tenant.yml', 'tenant.json'].some((f) => existsSync(path.join(tenantDir, f)))
  ) {
    mkdirSync(tenantDir, { recursive: true });
    writeFileSync(
      path.join(tenantDir, 'tenant.yaml'),
      `# Tenant ${record.tenant}: its eval set, started by npm run replay. Give its key as api_key\n# here or in EVAL_API_KEY_${record.tenant.toUpperCase().replace(/[^A-Z0-9]/g, '_')}.\n{}\n`,
    );
  }
  const headers: Record<string, string> = {};
  const dropped = /^(user-agent|accept|x-stainless-.*|content-length)$/;
  for (const [k, v] of Object.entries(spec.headers)) if (!dropped.test(k)) headers[k] = v;
  const expectHeaders: Record<string, string> = {};
  if (expected.modelServed !== null && expected.status < 300) {
    expectHeaders['x-model-served'] = expected.modelServed;
  }
  const when = new Date(record.capturedAt).toISOString();
  const raw: Record<string, unknown> = {
    id: opts.id ?? defaultCaseId(record),
    description: `request ${record.requestId} of ${record.tenant}, captured ${when}; expectations from the ${opts.source === 'replay' ? 'replay' : 'captured outcome'} (review them: a case states what should happen)`,
    tags: ['regression', 'replay'],
    request: {
      method: spec.method,
      path: spec.path,
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      ...(spec.body !== undefined ? { body: spec.body } : {}),
    },
    expect: {
      status: expected.status,
      ...(expected.errorCode !== null ? { error: { code: expected.errorCode } } : {}),
      ...(Object.keys(expectHeaders).length > 0 ? { headers: expectHeaders } : {}),
    },
  };
  const file = writeCaseFile(evalsDir, record.tenant, raw);
  // Read back as `npm run eval` will: a case the loader refuses must not be left behind.
  loadEvalSets(evalsDir, path.dirname(evalsDir), {}, [record.tenant]);
  return file;
}
