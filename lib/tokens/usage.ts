/**
 * The upstream's actual token usage of a request, as the gateway saw it leave: the contract
 * between the Lua snippet that reads the response in `body_filter` (Kong's bundled
 * `post-function`, shipped by `token-meter` in `kong.yml`) and every JS plugin's `log` phase
 * (`tenant-ratelimit` corrects its tokens-per-minute charge, `token-meter` settles the
 * budget and writes the ledger).
 *
 * Why Lua in body_filter: external plugins never see body chunks, and a `response` method
 * would buffer every stream. The snippet runs before any `log` phase, so every plugin's
 * `log`, whatever its priority, finds the usage in `kong.ctx.shared`.
 *
 * Wire format under `USAGE_KEY`: a plain string the sandboxed Lua can build with
 * `string.format` (no JSON library needed):
 *   `v=1;prompt=<int>;completion=<int>;total=<int>;cached=<int>;model=<name>;from=<sse|json>`
 */
import { SHARED_KEYS } from '../request/shared-keys';
export const USAGE_KEY = SHARED_KEYS.usage.key;

export interface ObservedUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  /** Prompt tokens the provider served from its own prompt cache (0 when not reported). */
  readonly cachedTokens: number;
  /** The model the upstream says served the request ('' when not reported). */
  readonly model: string;
  /** Where the numbers were read: the final SSE event or the JSON body. */
  readonly from: 'sse' | 'json';
}

const MODEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;

function count(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,12}$/.test(v)) return undefined;
  return Number(v);
}

/** Parses the snippet's string; undefined when absent or malformed (then: estimate). */
export function decodeUsage(raw: unknown): ObservedUsage | undefined {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 512) return undefined;
  const fields = new Map<string, string>();
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  if (fields.get('v') !== '1') return undefined;
  const prompt = count(fields.get('prompt'));
  const completion = count(fields.get('completion'));
  if (prompt === undefined || completion === undefined) return undefined;
  const total = count(fields.get('total')) ?? prompt + completion;
  const cached = count(fields.get('cached')) ?? 0;
  const model = fields.get('model') ?? '';
  const from = fields.get('from');
  if (from !== 'sse' && from !== 'json') return undefined;
  return Object.freeze({
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: total,
    cachedTokens: cached,
    model: MODEL_PATTERN.test(model) ? model : '',
    from,
  });
}

/** The same string the Lua snippet writes (tests and the harness use it). */
export function encodeUsage(u: ObservedUsage): string {
  return `v=1;prompt=${u.promptTokens};completion=${u.completionTokens};total=${u.totalTokens};cached=${u.cachedTokens};model=${u.model};from=${u.from}`;
}
