/**
 * Judging one case: what the client got back (status, error body, headers, answer) and what
 * the upstream received (model, persona, tools, injected knowledge) against the case's
 * expectations. Pure: the runner gathers the facts, this decides.
 */
import type { Expectations } from './format';
import { parseAnswerJson, validateJson } from './json-schema';

export interface ClientResponse {
  status: number;
  /** Lowercase names. */
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** What the upstream received for this request, when the runner can see it. */
export type UpstreamView = { observable: true; bodies: unknown[] } | { observable: false };

export type Verdict = { outcome: 'pass' } | { outcome: 'fail'; reasons: string[] } | NotApplicable;
export interface NotApplicable {
  outcome: 'n/a';
  reason: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function header(r: ClientResponse, name: string): string | undefined {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** The answer's text: a chat completion's first choice, or the deltas of an SSE stream. */
export function answerText(r: ClientResponse): string | undefined {
  const text = r.text;
  if (/^\s*data:/.test(text)) {
    let out = '';
    for (const line of text.split('\n')) {
      const m = /^data:\s*(.*)$/.exec(line.trim());
      if (!m || m[1] === '[DONE]') continue;
      try {
        const chunk = JSON.parse(m[1] ?? '') as {
          choices?: Array<{ delta?: { content?: unknown } }>;
        };
        const c = chunk.choices?.[0]?.delta?.content;
        if (typeof c === 'string') out += c;
      } catch {
        // a line that is not JSON is not part of the answer
      }
    }
    return out;
  }
  try {
    const body = JSON.parse(text) as {
      choices?: Array<{ message?: { content?: unknown }; text?: unknown }>;
    };
    const c = body.choices?.[0]?.message?.content ?? body.choices?.[0]?.text;
    return typeof c === 'string' ? c : undefined;
  } catch {
    return undefined;
  }
}

function systemTexts(body: unknown): string[] {
  if (!isObj(body) || !Array.isArray(body.messages)) return [];
  const out: string[] = [];
  for (const m of body.messages) {
    if (!isObj(m) || (m.role !== 'system' && m.role !== 'developer')) continue;
    if (typeof m.content === 'string') out.push(m.content);
    else if (Array.isArray(m.content)) {
      out.push(
        m.content.map((p) => (isObj(p) && typeof p.text === 'string' ? p.text : '')).join(''),
      );
    }
  }
  return out;
}

function firstMessage(body: unknown): Obj | undefined {
  if (!isObj(body) || !Array.isArray(body.messages)) return undefined;
  const m: unknown = body.messages[0];
  return isObj(m) ? m : undefined;
}

/** Tool names offered in a request body (function name, custom tool name, built-in type). */
export function toolNames(body: unknown): string[] {
  if (!isObj(body)) return [];
  const tools = [
    ...(Array.isArray(body.tools) ? body.tools : []),
    ...(Array.isArray(body.functions) ? body.functions : []),
  ];
  return tools.map((t) => {
    if (!isObj(t)) return '?';
    if (isObj(t.function) && typeof t.function.name === 'string') return t.function.name;
    if (typeof t.name === 'string') return t.name;
    return typeof t.type === 'string' ? t.type : '?';
  });
}

const FENCE = /^<<<KNOWLEDGE-[0-9a-f]+ (\d+) source="([^"]*)" score="([^"]*)">>>$/gm;

function unescapeSource(s: string): string {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/**
 * The knowledge sources retrieval-injector put into the system messages, in rank order (its
 * fence lines: `<<<KNOWLEDGE-<marker> <rank> source="…" score="…">>>`).
 */
export function injectedSources(body: unknown): string[] {
  const found: Array<{ rank: number; source: string }> = [];
  for (const text of systemTexts(body)) {
    for (const m of text.matchAll(FENCE)) {
      found.push({ rank: Number(m[1]), source: unescapeSource(m[2] ?? '') });
    }
  }
  return found.sort((a, b) => a.rank - b.rank).map((f) => f.source);
}

function needsUpstream(e: Expectations): boolean {
  return e.upstream !== undefined || e.retrieval !== undefined;
}

const q = (v: unknown) => JSON.stringify(v);

/**
 * The verdict on one response. `ownSources` are the tenant's document names (hit@k is
 * judged against the tenant's own documents; a source outside them is a leak).
 */
export function judge(
  expect: Expectations,
  res: ClientResponse,
  upstream: UpstreamView,
  ownSources: readonly string[],
): Verdict {
  if (needsUpstream(expect) && !upstream.observable) {
    return {
      outcome: 'n/a',
      reason: 'checks what the upstream received, which is not observable here',
    };
  }
  const reasons: string[] = [];
  if (expect.status !== undefined && res.status !== expect.status) {
    reasons.push(`status: expected ${expect.status}, got ${res.status} ${res.text.slice(0, 120)}`);
  }
  if (expect.error) {
    let err: Obj | undefined;
    try {
      const body = JSON.parse(res.text) as unknown;
      if (isObj(body) && isObj(body.error)) err = body.error;
    } catch {
      err = undefined;
    }
    if (!err)
      reasons.push(`error: expected an OpenAI-style error body, got ${res.text.slice(0, 120)}`);
    else {
      if (expect.error.code !== undefined && err.code !== expect.error.code)
        reasons.push(`error.code: expected ${expect.error.code}, got ${q(err.code)}`);
      if (expect.error.type !== undefined && err.type !== expect.error.type)
        reasons.push(`error.type: expected ${expect.error.type}, got ${q(err.type)}`);
    }
  }
  for (const [name, want] of Object.entries(expect.headers)) {
    const got = header(res, name);
    if (want === null && got !== undefined)
      reasons.push(`header ${name}: expected absent, got ${q(got)}`);
    if (want !== null && got !== want)
      reasons.push(`header ${name}: expected ${q(want)}, got ${q(got ?? null)}`);
  }
  if (upstream.observable) {
    const bodies = upstream.bodies;
    const last = bodies[bodies.length - 1];
    const u = expect.upstream;
    if (u?.called !== undefined && bodies.length > 0 !== u.called) {
      reasons.push(
        u.called
          ? 'upstream: expected the request to reach it, it did not'
          : `upstream: expected no call, got ${bodies.length}`,
      );
    }
    const needBody =
      u?.model !== undefined ||
      u?.persona !== undefined ||
      u?.system_contains !== undefined ||
      u?.system_not_contains !== undefined ||
      u?.tools !== undefined ||
      u?.max_tokens_at_most !== undefined ||
      expect.retrieval !== undefined;
    if (needBody && last === undefined) {
      reasons.push('upstream: the request never reached it, so nothing it received can be checked');
    } else if (needBody) {
      if (u?.model !== undefined) {
        const got = isObj(last) ? last.model : undefined;
        if (got !== u.model)
          reasons.push(`upstream model: expected ${u.model}, got ${q(got ?? null)}`);
      }
      if (u?.persona !== undefined) {
        const first = firstMessage(last);
        if (!first || first.role !== 'system' || first.content !== u.persona) {
          reasons.push(
            `persona: expected the first message to be the system message ${q(u.persona)}, got ${q(first ?? null).slice(0, 200)}`,
          );
        }
      }
      const systems = systemTexts(last);
      for (const s of u?.system_contains ?? []) {
        if (!systems.some((t) => t.includes(s)))
          reasons.push(`system messages: expected one containing ${q(s)}`);
      }
      for (const s of u?.system_not_contains ?? []) {
        if (systems.some((t) => t.includes(s)))
          reasons.push(`system messages: expected none containing ${q(s)}`);
      }
      if (u?.tools !== undefined) {
        const got = toolNames(last).sort();
        const want = [...u.tools].sort();
        if (q(got) !== q(want))
          reasons.push(`tools offered upstream: expected ${q(want)}, got ${q(got)}`);
      }
      if (u?.max_tokens_at_most !== undefined) {
        const got = isObj(last) ? (last.max_tokens ?? last.max_completion_tokens) : undefined;
        if (typeof got !== 'number' || got > u.max_tokens_at_most)
          reasons.push(
            `upstream max_tokens: expected at most ${u.max_tokens_at_most}, got ${q(got ?? null)}`,
          );
      }
      const r = expect.retrieval;
      if (r) {
        const sources = injectedSources(last);
        if (r.none && sources.length > 0)
          reasons.push(`retrieval: expected nothing injected, got ${q(sources)}`);
        const top = sources.slice(0, r.k);
        for (const h of r.hit) {
          if (!top.includes(h))
            reasons.push(`retrieval hit@${r.k}: ${h} not in ${q(top)} (all: ${q(sources)})`);
        }
        if (r.own_only) {
          const foreign = sources.filter((s) => !ownSources.includes(s));
          if (foreign.length > 0)
            reasons.push(`retrieval: sources not the tenant's own: ${q(foreign)}`);
        }
      }
    }
  }
  if (expect.answer) {
    const text = answerText(res);
    if (text === undefined) reasons.push(`answer: none in the response (${res.status})`);
    else {
      for (const s of expect.answer.contains) {
        if (!text.toLowerCase().includes(s.toLowerCase()))
          reasons.push(`answer: expected to contain ${q(s)}, got ${q(text.slice(0, 200))}`);
      }
      for (const s of expect.answer.not_contains) {
        if (text.toLowerCase().includes(s.toLowerCase()))
          reasons.push(`answer: expected not to contain ${q(s)}`);
      }
      if (expect.answer.json_schema) {
        const parsed = parseAnswerJson(text);
        if (!parsed.ok) reasons.push(`answer: not JSON: ${q(text.slice(0, 200))}`);
        else {
          const errors = validateJson(parsed.value, expect.answer.json_schema);
          if (errors.length > 0)
            reasons.push(`answer JSON schema: ${errors.slice(0, 5).join('; ')}`);
        }
      }
    }
  }
  return reasons.length === 0 ? { outcome: 'pass' } : { outcome: 'fail', reasons };
}
