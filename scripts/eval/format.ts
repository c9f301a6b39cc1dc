/**
 * The eval-case format (evals/README.md): per-tenant sets under `evals/<tenant>/`, each a
 * `tenant.yaml` (how to reach the tenant, which documents are its own) and case files, YAML
 * or JSON, holding one case or a list under `cases:`. One case per file is what a tool writes
 * (a captured request turned into a regression case); lists are what people write by hand.
 *
 * Everything is validated when loaded, with the file and case named in the message: a typo in
 * an expectation must fail loudly, never turn a check into one that always passes.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { JsonSchema } from './json-schema';

/** Where a case can be judged: any upstream, only the mock (CI), only a real model. */
export type Requires = 'any' | 'mock' | 'real';

export interface RequestSpec {
  method: string;
  path: string;
  /** Extra request headers (the tenant's key is added unless `auth` is `none`). */
  headers: Record<string, string>;
  body?: unknown;
  /** `tenant` (default): the tenant's API key as `Authorization: Bearer`; `none`: no key. */
  auth: 'tenant' | 'none';
}

export interface ExpectedError {
  code?: string;
  type?: string;
}

export interface ExpectedUpstream {
  /** Whether the request reached the upstream at all (a cache hit, a refusal: false). */
  called?: boolean;
  /** The `model` of the body the upstream received. */
  model?: string;
  /** The first message the upstream received is a system message with exactly this text. */
  persona?: string;
  /** Texts every one of which some system message sent upstream contains. */
  system_contains?: string[];
  /** Texts no system message sent upstream contains. */
  system_not_contains?: string[];
  /** Exactly these tool names were offered upstream (order aside); `[]`: none. */
  tools?: string[];
  /** `max_tokens` the upstream received is at most this. */
  max_tokens_at_most?: number;
}

export interface ExpectedRetrieval {
  /** hit@k: each of `hit` is among the first `k` sources injected (default k: 1). */
  k: number;
  hit: string[];
  /** Nothing was injected. */
  none: boolean;
  /** Every injected source is one of the tenant's own documents (default true). */
  own_only: boolean;
}

export interface ExpectedAnswer {
  contains: string[];
  not_contains: string[];
  /** The answer parsed as JSON (a ```json fence allowed) matches this schema. */
  json_schema?: JsonSchema;
}

export interface Expectations {
  status?: number;
  error?: ExpectedError;
  /** Response headers (lowercase names): a string to equal, `null` to be absent. */
  headers: Record<string, string | null>;
  upstream?: ExpectedUpstream;
  retrieval?: ExpectedRetrieval;
  answer?: ExpectedAnswer;
}

/** State the case needs before its request, undone after it. */
export interface CaseState {
  /** Share (0..1) of the tenant's budget cap already spent this period. */
  budget_used?: number;
}

export interface EvalCase {
  tenant: string;
  id: string;
  /** Repo-relative file the case came from. */
  file: string;
  description: string;
  /** The outcome kinds the case covers (persona, tools, tier, downgrade, retrieval, …). */
  tags: string[];
  requires: Requires;
  state: CaseState;
  /** Requests sent first (warming a cache); each must answer 2xx. */
  before: RequestSpec[];
  /**
   * Wait after `before`, for effects that become visible later than the answer (a semantic
   * cache row, stored from the log phase, is searchable once Milvus's consistency window passed).
   */
  settle_ms: number;
  request: RequestSpec;
  expect: Expectations;
  /** Send the request up to this many times until the expectations hold (log-phase effects). */
  attempts: number;
  interval_ms: number;
}

export interface TenantSet {
  tenant: string;
  dir: string;
  /** API key: EVAL_API_KEY_<TENANT> in the environment wins over `tenant.yaml`. */
  apiKey: string | undefined;
  /** The tenant's own documents (absolute paths), ingested for retrieval and hit@k. */
  knowledge: string[];
  cases: EvalCase[];
}

export class EvalFormatError extends Error {
  override readonly name = 'EvalFormatError';
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Obj, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new EvalFormatError(`${where}: unknown field "${k}" (allowed: ${allowed.join(', ')})`);
    }
  }
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v.length === 0)
    throw new EvalFormatError(`${where}: a string is required`);
  return v;
}

function strList(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) {
    throw new EvalFormatError(`${where}: a string or a list of strings is required`);
  }
  return list as string[];
}

function int(v: unknown, where: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new EvalFormatError(`${where}: an integer in [${min}, ${max}] is required`);
  }
  return v;
}

const TENANT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const CASE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function parseRequest(v: unknown, where: string): RequestSpec {
  if (!isObj(v)) throw new EvalFormatError(`${where}: an object is required`);
  onlyKeys(v, ['method', 'path', 'headers', 'body', 'auth'], where);
  const headers: Record<string, string> = {};
  if (v.headers !== undefined) {
    if (!isObj(v.headers)) throw new EvalFormatError(`${where}.headers: an object is required`);
    for (const [k, h] of Object.entries(v.headers)) headers[k] = str(h, `${where}.headers.${k}`);
  }
  const auth = v.auth ?? 'tenant';
  if (auth !== 'tenant' && auth !== 'none')
    throw new EvalFormatError(`${where}.auth: tenant or none`);
  const method = v.method === undefined ? 'POST' : str(v.method, `${where}.method`).toUpperCase();
  const p = v.path === undefined ? '/v1/chat/completions' : str(v.path, `${where}.path`);
  if (!p.startsWith('/')) throw new EvalFormatError(`${where}.path: must start with /`);
  return {
    method,
    path: p,
    headers,
    ...(v.body !== undefined ? { body: v.body } : {}),
    auth,
  };
}

function parseExpect(v: unknown, where: string): Expectations {
  if (!isObj(v)) throw new EvalFormatError(`${where}: an object is required`);
  onlyKeys(v, ['status', 'error', 'headers', 'upstream', 'retrieval', 'answer'], where);
  const out: Expectations = { headers: {} };
  if (v.status !== undefined) out.status = int(v.status, `${where}.status`, 100, 599);
  if (v.error !== undefined) {
    const e = v.error;
    if (!isObj(e)) throw new EvalFormatError(`${where}.error: an object is required`);
    onlyKeys(e, ['code', 'type'], `${where}.error`);
    out.error = {
      ...(e.code !== undefined ? { code: str(e.code, `${where}.error.code`) } : {}),
      ...(e.type !== undefined ? { type: str(e.type, `${where}.error.type`) } : {}),
    };
  }
  if (v.headers !== undefined) {
    if (!isObj(v.headers)) throw new EvalFormatError(`${where}.headers: an object is required`);
    for (const [k, h] of Object.entries(v.headers)) {
      if (h !== null && typeof h !== 'string' && typeof h !== 'number') {
        throw new EvalFormatError(`${where}.headers.${k}: a string, or null for "absent"`);
      }
      out.headers[k.toLowerCase()] = h === null ? null : String(h);
    }
  }
  if (v.upstream !== undefined) {
    const u = v.upstream;
    const w = `${where}.upstream`;
    if (!isObj(u)) throw new EvalFormatError(`${w}: an object is required`);
    onlyKeys(
      u,
      [
        'called',
        'model',
        'persona',
        'system_contains',
        'system_not_contains',
        'tools',
        'max_tokens_at_most',
      ],
      w,
    );
    if (u.called !== undefined && typeof u.called !== 'boolean')
      throw new EvalFormatError(`${w}.called: true or false`);
    if (u.tools !== undefined && !Array.isArray(u.tools))
      throw new EvalFormatError(`${w}.tools: a list (of tool names; [] for none)`);
    out.upstream = {
      ...(u.called !== undefined ? { called: u.called as boolean } : {}),
      ...(u.model !== undefined ? { model: str(u.model, `${w}.model`) } : {}),
      ...(u.persona !== undefined ? { persona: str(u.persona, `${w}.persona`) } : {}),
      ...(u.system_contains !== undefined
        ? { system_contains: strList(u.system_contains, `${w}.system_contains`) }
        : {}),
      ...(u.system_not_contains !== undefined
        ? { system_not_contains: strList(u.system_not_contains, `${w}.system_not_contains`) }
        : {}),
      ...(u.tools !== undefined ? { tools: strList(u.tools, `${w}.tools`) } : {}),
      ...(u.max_tokens_at_most !== undefined
        ? { max_tokens_at_most: int(u.max_tokens_at_most, `${w}.max_tokens_at_most`, 1, 1e9) }
        : {}),
    };
  }
  if (v.retrieval !== undefined) {
    const r = v.retrieval;
    const w = `${where}.retrieval`;
    if (!isObj(r)) throw new EvalFormatError(`${w}: an object is required`);
    onlyKeys(r, ['k', 'hit', 'none', 'own_only'], w);
    const hit = strList(r.hit, `${w}.hit`);
    const none = r.none === undefined ? false : r.none === true;
    if (r.none !== undefined && typeof r.none !== 'boolean')
      throw new EvalFormatError(`${w}.none: true or false`);
    if (none && hit.length > 0) throw new EvalFormatError(`${w}: "none" and "hit" contradict`);
    if (r.own_only !== undefined && typeof r.own_only !== 'boolean')
      throw new EvalFormatError(`${w}.own_only: true or false`);
    out.retrieval = {
      k: r.k === undefined ? 1 : int(r.k, `${w}.k`, 1, 100),
      hit,
      none,
      own_only: r.own_only !== false,
    };
  }
  if (v.answer !== undefined) {
    const a = v.answer;
    const w = `${where}.answer`;
    if (!isObj(a)) throw new EvalFormatError(`${w}: an object is required`);
    onlyKeys(a, ['contains', 'not_contains', 'json_schema'], w);
    if (a.json_schema !== undefined && !isObj(a.json_schema))
      throw new EvalFormatError(`${w}.json_schema: an object (a JSON Schema) is required`);
    out.answer = {
      contains: strList(a.contains, `${w}.contains`),
      not_contains: strList(a.not_contains, `${w}.not_contains`),
      ...(a.json_schema !== undefined ? { json_schema: a.json_schema as JsonSchema } : {}),
    };
  }
  const checks =
    out.status !== undefined ||
    out.error !== undefined ||
    Object.keys(out.headers).length > 0 ||
    out.upstream !== undefined ||
    out.retrieval !== undefined ||
    out.answer !== undefined;
  if (!checks) throw new EvalFormatError(`${where}: expects nothing (a case must check something)`);
  return out;
}

const CASE_FIELDS = [
  'id',
  'description',
  'tags',
  'requires',
  'state',
  'before',
  'request',
  'expect',
  'settle_ms',
  'attempts',
  'interval_ms',
] as const;

export function parseCase(v: unknown, tenant: string, file: string, index: number): EvalCase {
  const where0 = `${file}${index >= 0 ? ` case #${index + 1}` : ''}`;
  if (!isObj(v)) throw new EvalFormatError(`${where0}: a case must be an object`);
  const id = str(v.id, `${where0}: id`);
  if (!CASE_ID_PATTERN.test(id))
    throw new EvalFormatError(`${where0}: id must match ${CASE_ID_PATTERN.source}`);
  const where = `${file} case ${id}`;
  onlyKeys(v, CASE_FIELDS, where);
  const requires = v.requires ?? 'any';
  if (requires !== 'any' && requires !== 'mock' && requires !== 'real') {
    throw new EvalFormatError(`${where}: requires must be any, mock or real`);
  }
  const state: CaseState = {};
  if (v.state !== undefined) {
    if (!isObj(v.state)) throw new EvalFormatError(`${where}.state: an object is required`);
    onlyKeys(v.state, ['budget_used'], `${where}.state`);
    const b = v.state.budget_used;
    if (b !== undefined) {
      if (typeof b !== 'number' || !(b >= 0 && b <= 1))
        throw new EvalFormatError(`${where}.state.budget_used: a number in [0, 1]`);
      state.budget_used = b;
    }
  }
  const beforeRaw = v.before ?? [];
  if (!Array.isArray(beforeRaw)) throw new EvalFormatError(`${where}.before: a list of requests`);
  if (v.request === undefined) throw new EvalFormatError(`${where}: request is required`);
  if (v.expect === undefined) throw new EvalFormatError(`${where}: expect is required`);
  return {
    tenant,
    id,
    file,
    description: v.description === undefined ? '' : str(v.description, `${where}.description`),
    tags: strList(v.tags, `${where}.tags`),
    requires,
    state,
    before: beforeRaw.map((b, i) => parseRequest(b, `${where}.before[${i}]`)),
    request: parseRequest(v.request, `${where}.request`),
    expect: parseExpect(v.expect, `${where}.expect`),
    settle_ms: v.settle_ms === undefined ? 0 : int(v.settle_ms, `${where}.settle_ms`, 0, 30_000),
    attempts: v.attempts === undefined ? 1 : int(v.attempts, `${where}.attempts`, 1, 20),
    interval_ms:
      v.interval_ms === undefined ? 250 : int(v.interval_ms, `${where}.interval_ms`, 0, 10_000),
  };
}

function readDoc(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  try {
    return file.endsWith('.json') ? JSON.parse(text) : parse(text);
  } catch (e) {
    throw new EvalFormatError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The cases of one file: a single case (it has `id`) or `{cases: [...]}`. */
export function parseCaseFile(doc: unknown, tenant: string, file: string): EvalCase[] {
  if (isObj(doc) && Array.isArray(doc.cases)) {
    onlyKeys(doc, ['cases'], file);
    return doc.cases.map((c, i) => parseCase(c, tenant, file, i));
  }
  return [parseCase(doc, tenant, file, -1)];
}

const CASE_FILE = /\.(ya?ml|json)$/;

function caseFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...caseFiles(full));
    else if (CASE_FILE.test(name) && !/^tenant\.(ya?ml|json)$/.test(name)) out.push(full);
  }
  return out;
}

function envKeyName(tenant: string): string {
  return `EVAL_API_KEY_${tenant.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** Loads every tenant set under `root` (a directory per tenant), optionally only `tenants`. */
export function loadEvalSets(
  root: string,
  repoRoot: string,
  env: NodeJS.ProcessEnv = process.env,
  tenants?: readonly string[],
): TenantSet[] {
  if (!existsSync(root)) throw new EvalFormatError(`no eval directory ${root}`);
  const sets: TenantSet[] = [];
  for (const name of readdirSync(root).sort()) {
    const dir = path.join(root, name);
    if (!statSync(dir).isDirectory()) continue;
    if (tenants && !tenants.includes(name)) continue;
    if (!TENANT_PATTERN.test(name))
      throw new EvalFormatError(`${dir}: a tenant directory is named by a tenant id`);
    const tenantFile = ['tenant.yaml', 'tenant.yml', 'tenant.json']
      .map((f) => path.join(dir, f))
      .find((f) => existsSync(f));
    if (!tenantFile) throw new EvalFormatError(`${dir}: tenant.yaml is missing`);
    const rel = (f: string) => path.relative(repoRoot, f) || f;
    const t = readDoc(tenantFile);
    if (!isObj(t)) throw new EvalFormatError(`${rel(tenantFile)}: an object is required`);
    onlyKeys(t, ['api_key', 'knowledge'], rel(tenantFile));
    const knowledge: string[] = [];
    for (const k of strList(t.knowledge, `${rel(tenantFile)}: knowledge`)) {
      const p = path.resolve(repoRoot, k);
      if (!existsSync(p)) throw new EvalFormatError(`${rel(tenantFile)}: no such path ${k}`);
      if (statSync(p).isDirectory()) {
        for (const f of readdirSync(p).sort()) {
          if (statSync(path.join(p, f)).isFile()) knowledge.push(path.join(p, f));
        }
      } else knowledge.push(p);
    }
    const cases = caseFiles(dir).flatMap((f) => parseCaseFile(readDoc(f), name, rel(f)));
    const seen = new Set<string>();
    for (const c of cases) {
      if (seen.has(c.id)) throw new EvalFormatError(`${c.file}: case id ${c.id} is used twice`);
      seen.add(c.id);
    }
    const fromEnv = env[envKeyName(name)];
    const apiKey =
      fromEnv ?? (t.api_key === undefined ? undefined : str(t.api_key, `${rel(tenantFile)}: key`));
    sets.push({ tenant: name, dir, apiKey, knowledge, cases });
  }
  return sets;
}

/** Replaces `{{run}}` in every string of `v` (a per-run nonce: fresh cache keys each run). */
export function withRunId<T>(v: T, run: string): T {
  if (typeof v === 'string') return v.split('{{run}}').join(run) as T;
  if (Array.isArray(v)) return v.map((x: unknown) => withRunId(x, run)) as T;
  if (isObj(v)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withRunId(x, run)])) as T;
  }
  return v;
}

/**
 * Writes one case as its own file, `<root>/<tenant>/<subdir>/<id>.yaml`: the shape a tool
 * writes (e.g. a captured request turned into a regression case). The case is validated first,
 * exactly as the loader will read it back, and an existing file is never overwritten.
 * Returns the path written.
 */
export function writeCaseFile(
  root: string,
  tenant: string,
  raw: Record<string, unknown>,
  subdir = 'regressions',
): string {
  if (!TENANT_PATTERN.test(tenant)) throw new EvalFormatError(`not a tenant id: ${tenant}`);
  const dir = path.join(root, tenant, subdir);
  const id = typeof raw.id === 'string' ? raw.id : '';
  const file = path.join(dir, `${id}.yaml`);
  parseCase(raw, tenant, file, -1);
  if (existsSync(file)) throw new EvalFormatError(`${file} exists already: choose another id`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, stringify(raw, { lineWidth: 100 }), { flag: 'wx' });
  return file;
}
