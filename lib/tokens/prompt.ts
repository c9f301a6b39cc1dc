/**
 * What a request's prompt count is made of, read from its body once (estimate.ts): the
 * messages and the tools' JSON. A plain record, so that it can be counted here or handed to
 * the counting thread (count-pool.ts) as it is.
 */
import { countChatPromptTokens, countTextTokens, type CountableMessage } from './tokenize';

export interface PromptToCount {
  /** The model asked for: it picks the encoding. */
  readonly model: string;
  readonly messages: readonly CountableMessage[];
  /** The tools' definitions as sent (JSON), counted as prompt text; absent without tools. */
  readonly tools?: string;
}

/** The prompt's tokens: the chat framing, each message, and the tools' definitions. */
export function countPrompt(p: PromptToCount): number {
  let n = countChatPromptTokens(p.messages, p.model);
  if (p.tools !== undefined) n += countTextTokens(p.tools, p.model);
  return n;
}

/** Characters the count would read: what its cost grows with. */
export function promptChars(p: PromptToCount): number {
  let n = p.tools?.length ?? 0;
  for (const m of p.messages) n += m.role.length + m.text.length + (m.name?.length ?? 0);
  return n;
}
