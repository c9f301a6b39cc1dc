/**
 * The text of a chat message's `content` when it is text only: a string, or an array of text
 * parts (`{type: "text", text}`) joined with `separator`; null when any part is something else
 * (an image, audio, a file), which a caller comparing or merging text must not lose silently.
 */
export function textOnly(content: unknown, separator: string): string | null {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return null;
  const parts: string[] = [];
  for (const p of content as unknown[]) {
    const part = p as { type?: unknown; text?: unknown } | null;
    if (part?.type !== 'text' || typeof part.text !== 'string') return null;
    parts.push(part.text);
  }
  return parts.join(separator);
}
