/**
 * The content guard of a plan (issue 21 part 6): deny and allow patterns the operator sets in
 * kong.yml per plan and per tenant, checked in tenant-auth's access on what the client wrote,
 * before anything of the operator's (persona, retrieved context) joins it. Nothing in the
 * request can switch it off or narrow what it reads:
 *
 * - It reads every string value of the body, wherever it sits, except the values of a few
 *   fields the model never reads as text (identifiers, enums, URLs and base64 payloads,
 *   `metadata`). Kong's bundled ai-prompt-guard reads the `user` role's `content` strings (all
 *   roles with `match_all_roles`) and `prompt`: a phrase moved to a system or assistant
 *   message, a tool's description, a function's arguments or the Responses API's `input`
 *   escapes it. Here a field OpenAI adds tomorrow is read by default.
 * - Before matching, the text is normalised as a reader sees it, not as bytes: Unicode NFKC
 *   (full-width and other compatibility forms fold to their plain letters), format characters
 *   removed (zero-width joiners and spaces, bidi controls, soft hyphens), whitespace runs made
 *   one space; patterns match case-insensitively. JSON's `\u` escapes are gone once parsed.
 * - Content it cannot read (an image, audio, a file, a prompt given as token ids) is refused
 *   while `non_text` is `refuse`, the default: a picture of the forbidden sentence is the
 *   oldest way around a text filter.
 * - The plan's guard and the tenant's both apply (deny: either denies; allow: each guard's
 *   list must match): a tenant's own entry in kong.yml adds to its plan's guard, never loosens
 *   it. No header or body field is consulted.
 *
 * Patterns are RE2 syntax, run by re2js: linear time whatever the pattern and the input, so a
 * tenant cannot turn an operator's pattern into a catastrophic backtrack (V8's RegExp can).
 * A pattern RE2 refuses (look-around, back-references) is a misconfiguration at start.
 * Only the generation APIs (chat, completions, responses) are guarded: the others produce no
 * text from a prompt.
 */
import { RE2JS } from 're2js';
import { GatewayError } from '../../lib/http/errors';
import type { FieldValue } from '../../lib/schema/derive';
import { field } from '../../lib/schema/fields';
import type { TenantId } from '../../lib/tenant/tenant-id';

/** A `guard` record as readConfig returns it, read off `guardField` (lib/schema/derive.ts). */
export type GuardConfig = NonNullable<FieldValue<ReturnType<typeof guardField>>>;

/** The `guard` record of a plan or a tenant (null when absent). */
export function guardField(description: string) {
  const patterns = (what: string) =>
    field.array(
      what,
      field.string('An RE2 pattern, matched case-insensitively.', { len_min: 1, len_max: 500 }),
      { len_max: 50 },
    );
  return field.record(
    description,
    [
      {
        deny_patterns: patterns(
          'A request whose text matches any of these is refused (400 content_guard_refused).',
        ),
      },
      {
        allow_patterns: patterns(
          'When set, a request whose text matches none of these is refused (400 content_guard_refused).',
        ),
      },
      {
        non_text: field.string(
          'Content the guard cannot read (images, audio, files, prompts as token ids): `refuse` it (400 content_guard_unverifiable) or `allow` it unread.',
          { one_of: ['refuse', 'allow'], default: 'refuse', required: true },
        ),
      },
    ],
    // Kong makes a plugin config's records required unless told otherwise (entity.lua).
    { required: false },
  );
}

/** Fields whose values the model never reads as text (identifiers, enums, payloads). */
const NOT_TEXT = new Set([
  'model',
  'role',
  'type',
  'id',
  'object',
  'tool_call_id',
  'call_id',
  'previous_response_id',
  'file_id',
  'user',
  'safety_identifier',
  'prompt_cache_key',
  'service_tier',
  'reasoning_effort',
  'detail',
  'voice',
  'url',
  'image_url',
  'data',
  'file_data',
  'metadata',
  'stop',
]);

/** Content parts the guard cannot read. */
const NON_TEXT_PARTS = new Set([
  'image_url',
  'input_image',
  'input_audio',
  'file',
  'input_file',
  'image',
  'audio',
]);

export type GuardVerdict = 'pass' | 'denied' | 'not_allowed' | 'unverifiable';

/** What the guard reads of a body: its text, and whether it holds content it cannot read. */
export function collectText(body: unknown): { text: string; nonText: boolean } {
  const pieces: string[] = [];
  let nonText = false;
  const walk = (v: unknown, key: string | null): void => {
    if (typeof v === 'string') {
      pieces.push(v);
    } else if (Array.isArray(v)) {
      // A prompt of token ids (completions' `prompt: [1, 2]` or `[[1, 2]]`) is not text.
      if (key === 'prompt' || key === 'input') {
        if (v.some((x) => typeof x === 'number' || Array.isArray(x))) nonText = true;
      }
      for (const x of v) walk(x, key);
    } else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      if (typeof o.type === 'string' && NON_TEXT_PARTS.has(o.type)) nonText = true;
      // Audio parts without a type, in case a client leaves it out.
      if ('input_audio' in o || 'image_url' in o || 'file_data' in o) nonText = true;
      for (const [k, x] of Object.entries(o)) if (!NOT_TEXT.has(k)) walk(x, k);
    }
  };
  walk(body, null);
  return { text: normalise(pieces.join('\n')), nonText };
}

/** As a reader sees it: NFKC, no format characters, one space for any whitespace run. */
export function normalise(s: string): string {
  return s
    .normalize('NFKC')
    .replace(/\p{Cf}/gu, '')
    .replace(/\s+/gu, ' ');
}

class Guard {
  private constructor(
    private readonly deny: RE2JS[],
    private readonly allow: RE2JS[],
    readonly nonText: 'refuse' | 'allow',
  ) {}

  /** Throws on a pattern RE2 does not take, naming where it is. */
  static compile(cfg: GuardConfig, where: string): Guard {
    const compile = (p: string, list: string) => {
      try {
        return RE2JS.compile(p, RE2JS.CASE_INSENSITIVE);
      } catch (e) {
        throw new Error(
          `${where}.guard.${list}: '${p}' is not an RE2 pattern (${e instanceof Error ? e.message : String(e)})`,
        );
      }
    };
    return new Guard(
      (cfg.deny_patterns ?? []).map((p) => compile(p, 'deny_patterns')),
      (cfg.allow_patterns ?? []).map((p) => compile(p, 'allow_patterns')),
      cfg.non_text,
    );
  }

  judge(text: string, nonText: boolean): GuardVerdict {
    if (nonText && this.nonText === 'refuse') return 'unverifiable';
    if (this.deny.some((p) => p.matcher(text).find())) return 'denied';
    if (this.allow.length > 0 && !this.allow.some((p) => p.matcher(text).find()))
      return 'not_allowed';
    return 'pass';
  }
}

/** Every (plan, tenant) pair's guards, compiled at start. */
export class ContentGuards {
  private readonly plans = new Map<string, Guard>();
  private readonly tenants = new Map<string, Guard>();

  /** Throws (a misconfiguration) on a pattern RE2 does not take. */
  constructor(cfg: {
    plans: Record<string, { guard?: GuardConfig | null }>;
    tenants: Record<string, { guard?: GuardConfig | null }>;
  }) {
    for (const [name, plan] of Object.entries(cfg.plans))
      if (plan.guard) this.plans.set(name, Guard.compile(plan.guard, `plans.${name}`));
    for (const [id, o] of Object.entries(cfg.tenants))
      if (o.guard) this.tenants.set(id, Guard.compile(o.guard, `tenants.${id}`));
  }

  /** True when a request of this plan and tenant is guarded (its body must be read). */
  applies(plan: string, tenant: TenantId): boolean {
    return this.plans.has(plan) || this.tenants.has(tenant);
  }

  /** The plan's guard, then the tenant's; the first refusal wins. */
  check(plan: string, tenant: TenantId, body: unknown): GuardVerdict {
    const guards = [this.plans.get(plan), this.tenants.get(tenant)].filter(
      (g): g is Guard => g !== undefined,
    );
    if (guards.length === 0) return 'pass';
    const { text, nonText } = collectText(body);
    for (const g of guards) {
      const v = g.judge(text, nonText);
      if (v !== 'pass') return v;
    }
    return 'pass';
  }
}

/**
 * The refusal: which pattern matched is not said (a tenant probing the guard learns nothing
 * it could write around), only what kind of refusal it was.
 */
export function guardRefusal(verdict: Exclude<GuardVerdict, 'pass'>): GatewayError {
  if (verdict === 'unverifiable') {
    return new GatewayError({
      status: 400,
      type: 'invalid_request_error',
      code: 'content_guard_unverifiable',
      message:
        'your plan’s content guard reads text only: images, audio, files and prompts given as token ids are not accepted',
    });
  }
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'content_guard_refused',
    message: 'the request was refused by your plan’s content guard',
  });
}
