/**
 * What kong.yml's post-function kept of a provider's answer (lib/capture/answer-snippet.lua:
 * `all;<answer>` or `cut;<its first 64 KiB>`), read by the log phases that act on it:
 * tenant-auth records the objects a tenant made (`store: scoped`), token-meter the batches and
 * batch input files it meters. Pure: tested in test/unit/stored-objects.test.ts.
 */

/** What kong.yml's post-function kept of the answer (lib/capture/answer-snippet.lua). */
export function decodeSeen(raw: unknown): { text: string; whole: boolean } | null {
  if (typeof raw !== 'string') return null;
  if (raw.startsWith('all;')) return { text: raw.slice(4), whole: true };
  if (raw.startsWith('cut;')) return { text: raw.slice(4), whole: false };
  return null;
}

/** The id of the object an answer made: its top-level `id`, else the first `"id"` in it (SSE). */
export function madeId(text: string): string | null {
  const obj = jsonObject(text);
  if (obj !== null) return typeof obj.id === 'string' && obj.id !== '' ? obj.id : null;
  const m = /"id"\s*:\s*"([^"\\]{1,192})"/.exec(text);
  return m?.[1] ?? null;
}

export function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
