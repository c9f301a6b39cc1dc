/**
 * Turning retrieved chunks into context the upstream can use without being steered by it:
 * - the system message: each chunk between fence lines that carry a random per-request
 *   marker, labelled with its source and score; the chunk text and source are escaped
 *   (`&`, `<`, `>`) so no chunk can write a fence line, close its own fence or open a
 *   message-like block, and the marker cannot be guessed in advance anyway;
 * - the `X-Retrieval-Context` header: base64url JSON, size-bounded (chunks that do not fit
 *   are left out, and the header says how many were).
 */
import { randomBytes } from 'node:crypto';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type { RetrievedChunk } from '../../lib/retrieval/knowledge-store';

export const HEADER_VERSION = 1;

/** Escapes text so it cannot form markup or a fence line of ours. */
export function escapeChunkText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function newFenceMarker(): string {
  return `KNOWLEDGE-${randomBytes(8).toString('hex')}`;
}

function scoreText(score: number): string {
  return score.toFixed(3);
}

export function renderChunks(chunks: readonly RetrievedChunk[], fence: string): string {
  return chunks
    .map((c, i) =>
      [
        `<<<${fence} ${i + 1} source="${escapeChunkText(c.source).replace(/"/g, '&quot;')}" score="${scoreText(c.score)}">>>`,
        escapeChunkText(c.text),
        `<<<END ${fence} ${i + 1}>>>`,
      ].join('\n'),
    )
    .join('\n\n');
}

/** The system message: the template with its placeholders filled, each exactly once. */
export function renderSystemMessage(
  template: string,
  namespace: TenantId,
  chunks: readonly RetrievedChunk[],
  fence: string,
): string {
  // One pass, so a placeholder inside a chunk (or the namespace) is never expanded.
  const values: Record<string, string> = {
    chunks: renderChunks(chunks, fence),
    namespace,
    fence,
  };
  return template.replace(
    /\{\{(chunks|namespace|fence)\}\}/g,
    (_, name: string) => values[name] ?? '',
  );
}

export interface ContextHeader {
  v: number;
  namespace: string;
  chunks: Array<{ source: string; score: number; text: string }>;
  /** Chunks retrieved but left out to respect the size bound. */
  omitted: number;
}

/**
 * base64url JSON of as many chunks (best first) as fit in `maxBytes`; null when not even
 * the empty envelope fits.
 */
export function renderContextHeader(
  namespace: TenantId,
  chunks: readonly RetrievedChunk[],
  maxBytes: number,
): string | null {
  const encode = (included: number): string => {
    const body: ContextHeader = {
      v: HEADER_VERSION,
      namespace,
      chunks: chunks.slice(0, included).map((c) => ({
        source: c.source,
        score: Number(scoreText(c.score)),
        text: c.text,
      })),
      omitted: chunks.length - included,
    };
    return Buffer.from(JSON.stringify(body), 'utf8').toString('base64url');
  };
  for (let n = chunks.length; n >= 0; n--) {
    const value = encode(n);
    if (value.length <= maxBytes) return value;
  }
  return null;
}

/** Decodes a header value (for upstream apps and tests). */
export function decodeContextHeader(value: string): ContextHeader {
  return JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as ContextHeader;
}
