/**
 * Runs eval cases against a target, one at a time (cases may prepare a tenant's budget, and a
 * cache case needs its warm-up before it), and judges each.
 */
import http from 'node:http';
import path from 'node:path';
import https from 'node:https';
import { judge, type ClientResponse, type Verdict } from './checks';
import { withRunId, type EvalCase, type RequestSpec, type TenantSet } from './format';
import type { CaseOutcome } from './gate';
import { CASE_HEADER, type EvalTarget } from './stack';

const REQUEST_TIMEOUT_MS = 120_000;
/** Rate-limit refusals the runner waits out, as the OpenAI SDKs do, before giving up. */
const RATE_LIMIT_RETRIES = 6;
const RATE_LIMIT_MAX_WAIT_MS = 5000;

export function send(
  base: string,
  spec: RequestSpec,
  apiKey: string | undefined,
  tag: string,
): Promise<ClientResponse> {
  const url = new URL(spec.path, `${base}/`);
  const headers: Record<string, string> = { [CASE_HEADER]: tag, ...spec.headers };
  if (spec.auth === 'tenant' && apiKey) headers.authorization = `Bearer ${apiKey}`;
  let body: Buffer | undefined;
  if (spec.body !== undefined) {
    body = Buffer.from(
      typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body),
      'utf8',
    );
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
      headers['content-type'] = 'application/json';
    headers['content-length'] = String(body.length);
  }
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    // A fresh connection per request: a kept-alive socket closed by the server's idle timeout
    // just as the next case sends on it would fail that case for nothing.
    const req = mod.request(
      url,
      { method: spec.method, headers, agent: false, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rateLimited(r: ClientResponse): boolean {
  if (r.status !== 429) return false;
  try {
    const code = (JSON.parse(r.text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' && code.startsWith('tenant_') && code.endsWith('_exceeded');
  } catch {
    return false;
  }
}

/** Sends, waiting out the tenant's own rate limit unless the case is about a 429. */
async function sendPaced(
  base: string,
  spec: RequestSpec,
  apiKey: string | undefined,
  tag: string,
  expect429: boolean,
): Promise<ClientResponse> {
  for (let i = 0; ; i++) {
    const r = await send(base, spec, apiKey, tag);
    if (expect429 || i >= RATE_LIMIT_RETRIES || !rateLimited(r)) return r;
    const after = Number(r.headers['retry-after']);
    await sleep(
      Math.min(RATE_LIMIT_MAX_WAIT_MS, Number.isFinite(after) && after > 0 ? after * 1000 : 1000),
    );
  }
}

async function runOne(
  target: EvalTarget,
  set: TenantSet,
  raw: EvalCase,
  run: string,
  ownSources: string[],
): Promise<Verdict> {
  if (raw.requires !== 'any' && raw.requires !== target.upstream) {
    return {
      outcome: 'n/a',
      reason: `needs a ${raw.requires} upstream; this run has a ${target.upstream} one`,
    };
  }
  if (raw.state.budget_used !== undefined && !target.budget) {
    return { outcome: 'n/a', reason: 'prepares a budget, which this target does not allow' };
  }
  if (!set.apiKey && [raw.request, ...raw.before].some((r) => r.auth === 'tenant')) {
    return {
      outcome: 'fail',
      reasons: [
        `no API key for ${set.tenant} (tenant.yaml api_key, or EVAL_API_KEY_${set.tenant.toUpperCase()})`,
      ],
    };
  }
  const c = withRunId(raw, run);
  const undo =
    c.state.budget_used !== undefined
      ? await target.budget?.spend(set.tenant, c.state.budget_used)
      : undefined;
  try {
    for (const [i, b] of c.before.entries()) {
      const r = await sendPaced(
        target.url,
        b,
        set.apiKey,
        `${run}/${set.tenant}/${c.id}/before${i}`,
        false,
      );
      if (r.status < 200 || r.status > 299) {
        return {
          outcome: 'fail',
          reasons: [`before[${i}]: expected 2xx, got ${r.status} ${r.text.slice(0, 200)}`],
        };
      }
    }
    if (c.before.length > 0 && c.settle_ms > 0) await sleep(c.settle_ms);
    const expect429 = c.expect.status === 429;
    let verdict: Verdict = { outcome: 'fail', reasons: ['not run'] };
    for (let attempt = 1; attempt <= c.attempts; attempt++) {
      const tag = `${run}/${set.tenant}/${c.id}/${attempt}`;
      const res = await sendPaced(target.url, c.request, set.apiKey, tag, expect429);
      verdict = judge(c.expect, res, await target.observe(tag), ownSources);
      if (verdict.outcome !== 'fail') break;
      if (attempt < c.attempts) await sleep(c.interval_ms);
    }
    if (verdict.outcome === 'fail' && c.attempts > 1) {
      verdict = {
        outcome: 'fail',
        reasons: [...verdict.reasons, `(still failing after ${c.attempts} attempts)`],
      };
    }
    return verdict;
  } finally {
    await undo?.();
  }
}

export async function runEvalSets(
  target: EvalTarget,
  sets: readonly TenantSet[],
  run: string,
  onCase: (o: CaseOutcome) => void = () => undefined,
): Promise<CaseOutcome[]> {
  const out: CaseOutcome[] = [];
  for (const set of sets) {
    const own = set.knowledge.map((f) => path.basename(f));
    for (const c of set.cases) {
      let v: Verdict;
      try {
        v = await runOne(target, set, c, run, own);
      } catch (e) {
        v = { outcome: 'fail', reasons: [`error: ${e instanceof Error ? e.message : String(e)}`] };
      }
      const o: CaseOutcome = {
        tenant: set.tenant,
        id: c.id,
        file: c.file,
        outcome: v.outcome,
        reasons: v.outcome === 'fail' ? v.reasons : v.outcome === 'n/a' ? [v.reason] : [],
      };
      out.push(o);
      onCase(o);
    }
  }
  return out;
}
