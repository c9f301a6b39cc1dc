/**
 * What the semantic cache compares, and what it never lets differ.
 *
 * A chat request splits in two:
 * - the **question**: the text of its last message, which must be the user's; only this is
 *   compared by embedding similarity;
 * - the **scope**: everything else the exact key holds (../cache-key.ts) — the tenant, plan,
 *   persona, tool grants, knowledge namespace, route, service, path, and the whole canonical
 *   body with the question blanked out (model asked for, earlier messages, system prompt,
 *   tools, tool_choice, response_format, temperature, …) — plus the knowledge and cache
 *   generations in force. The scope is an HMAC under the tenant's naming key, stored with each
 *   row and required equal by the search filter: a near-identical question under another
 *   model, persona, tool grant, conversation, route, knowledge generation or after a purge
 *   never matches.
 *
 * `semanticScope` takes a TenantContext: there is no way to name a scope without one.
 */
import { textOnly } from '../../../lib/request/content-text';
import type { TenantContext } from '../../../lib/tenant/context';
import { canonicalJson } from '../canonical';
import { tenantDigest, type RequestIdentity } from '../cache-key';
import type { CacheKeyring } from '../crypto';
import type { Generations } from '../entry';

/** Bump when anything below changes meaning: every old row is then out of scope. */
export const SCOPE_FORMAT_VERSION = 'sc1';

/** A scope is lowercase hex (it goes into a Milvus filter expression). */
export const SCOPE_PATTERN = /^[0-9a-f]{64}$/;

export type QuestionRefusal = 'no_question' | 'question_too_long';

export interface SemanticRequest {
  /** The last user message's text: what is embedded and compared. */
  readonly question: string;
  /** Canonical JSON of the body with the question replaced by null. */
  readonly context: string;
}

/** An image or audio part is not text: such a question is not compared by similarity. */
function textOf(content: unknown): string | null {
  return textOnly(content, '\n');
}

/**
 * The question and its context, or why the request has none: the last message must be the
 * user's with text content (a tool result or an assistant turn is not a question), non-empty
 * after trimming and at most `maxChars` long.
 */
export function semanticRequest(
  body: Record<string, unknown>,
  maxChars: number,
): SemanticRequest | QuestionRefusal {
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) return 'no_question';
  const last = messages[messages.length - 1] as Record<string, unknown> | null;
  if (last === null || typeof last !== 'object' || last.role !== 'user') return 'no_question';
  const question = textOf(last.content);
  if (question === null || question.trim() === '') return 'no_question';
  if (question.length > maxChars) return 'question_too_long';
  const blanked: Record<string, unknown> = {
    ...body,
    messages: [...messages.slice(0, -1), { ...last, content: null }],
  };
  if (blanked.stream === false) delete blanked.stream;
  if (blanked.n === 1) delete blanked.n;
  return { question, context: canonicalJson(blanked) };
}

/** The tenant's scope of a request: hex HMAC-SHA256 under the tenant's naming key. */
export function semanticScope(
  ctx: TenantContext,
  keyring: CacheKeyring,
  req: Omit<RequestIdentity, 'canonicalBody'> & { readonly context: string },
  gens: Generations,
): string {
  const models = [
    ctx.policy.preferredModel ?? '\u0000none',
    ctx.policy.fallbackModel ?? '\u0000none',
  ];
  const rest = [req.context, gens.knowledge, gens.cache];
  return tenantDigest(ctx, keyring, SCOPE_FORMAT_VERSION, models, req, rest);
}
