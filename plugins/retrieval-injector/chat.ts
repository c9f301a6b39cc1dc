/**
 * The chat body: which text is the query, and where the context message goes.
 */
import { textOnly } from '../../lib/request/content-text';
import type { QuerySource } from './schema';
import { parseJsonOrUndefined } from '../../lib/request/json-depth';

export interface ChatMessage {
  role?: unknown;
  content?: unknown;
  [k: string]: unknown;
}

export interface ChatBody {
  messages: ChatMessage[];
  [k: string]: unknown;
}

/** A parsed JSON object with a `messages` array, else null (nothing to augment). */
function parseOrUndefined(bytes: Buffer): unknown {
  return parseJsonOrUndefined(bytes.toString('utf8'));
}

export function parseChatBody(
  bytes: Buffer,
  /** The body parsed once per request (the request's scope); undefined when not JSON. */
  parse: (bytes: Buffer) => unknown = parseOrUndefined,
): ChatBody | null {
  if (bytes.length === 0) return null;
  const body = parse(bytes);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null;
  const messages = (body as { messages?: unknown }).messages;
  return Array.isArray(messages) ? (body as ChatBody) : null;
}

/** Text of a message's content: a string, or the text parts of an array. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p: unknown) => {
      const part = p as { type?: unknown; text?: unknown } | null;
      return part?.type === 'text' && typeof part.text === 'string' ? part.text : '';
    })
    .filter((s) => s.length > 0)
    .join('\n');
}

/** The query: the last user message (or all user messages), its last `maxChars` kept. */
export function extractQuery(body: ChatBody, source: QuerySource, maxChars: number): string {
  const users = body.messages.filter(
    (m): m is ChatMessage => m !== null && typeof m === 'object' && m.role === 'user',
  );
  const texts =
    source === 'last_user'
      ? [contentText(users.at(-1)?.content)]
      : users.map((m) => contentText(m.content));
  const query = texts
    .filter((t) => t.trim().length > 0)
    .join('\n')
    .trim();
  // The end of a long message is usually the question; keep it.
  return query.length > maxChars ? query.slice(query.length - maxChars) : query;
}

/** Inserts the context system message after the leading system messages (persona first). */
export function insertSystemMessage(body: ChatBody, content: string): ChatBody {
  const messages = [...body.messages];
  let at = 0;
  while (at < messages.length) {
    const m = messages[at];
    if (!m || typeof m !== 'object' || (m.role !== 'system' && m.role !== 'developer')) break;
    at++;
  }
  messages.splice(at, 0, { role: 'system', content });
  return { ...body, messages };
}

/**
 * The leading system/developer messages and the context merged into ONE system message (their
 * texts in order, persona first, then the context), for upstreams that keep a single system
 * prompt: Kong 3.9's ai-proxy converting to Anthropic keeps only the last system message
 * (kong/llm/drivers/anthropic.lua), so a persona followed by a separate context message would
 * be dropped. A leading message whose content is not text (parts other than text) is left as it
 * is and the context inserted after it, as `insertSystemMessage` does.
 */
export function mergeSystemMessage(body: ChatBody, content: string): ChatBody {
  const messages = [...body.messages];
  let at = 0;
  const texts: string[] = [];
  while (at < messages.length) {
    const m = messages[at];
    if (!m || typeof m !== 'object' || (m.role !== 'system' && m.role !== 'developer')) break;
    const text = textOnly(m.content, '');
    if (text === null) return insertSystemMessage(body, content);
    if (text.length > 0) texts.push(text);
    at++;
  }
  texts.push(content);
  messages.splice(0, at, { role: 'system', content: texts.join('\n\n') });
  return { ...body, messages };
}
