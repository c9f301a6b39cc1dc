/**
 * The canonical form of a request body, so that every spelling of the same request finds the
 * same entry and no two different requests share one.
 *
 * - Parsed with JSON.parse: Unicode escapes (`"\u0068i"` = `"hi"`), number spellings (`0`,
 *   `0.0`, `0e0`, `-0`) and whitespace all collapse to one value.
 * - Serialised with object keys in code-unit order (as RFC 8785 JCS sorts them) and
 *   JSON.stringify's own string and number forms, so key order never matters.
 * - A body with a **duplicate key** at any depth is not cacheable: JSON.parse keeps the last
 *   value, some upstream parsers keep the first, so the request the key describes might not be
 *   the request the model answered. Keys are compared after unescaping (`"a"` and `"\u0061"`
 *   are duplicates).
 * - No Unicode normalisation (NFC): different code points are different tokens to a model.
 */
export const MAX_DEPTH = 64;

export class NotCanonicalisable extends Error {
  override readonly name = 'NotCanonicalisable';
  constructor(readonly reason: 'not_json' | 'not_object' | 'duplicate_keys' | 'too_deep') {
    super(`request body is not cacheable: ${reason}`);
  }
}

/**
 * True when some object in the (valid) JSON text repeats a key. A single pass over the text;
 * only object keys are decoded.
 */
export function hasDuplicateKeys(text: string): boolean {
  const frames: Array<{ keys: Set<string>; expectKey: boolean } | null> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) frames.push({ keys: new Set(), expectKey: true });
    else if (c === 0x5b /* [ */) frames.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) frames.pop();
    else if (c === 0x2c /* , */) {
      const top = frames[frames.length - 1];
      if (top) top.expectKey = true;
    } else if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22)
        j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      const top = frames[frames.length - 1];
      if (top?.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return true;
        top.keys.add(key);
        top.expectKey = false;
      }
      i = j;
    }
  }
  return false;
}

function write(v: unknown, depth: number, out: string[]): void {
  if (depth > MAX_DEPTH) throw new NotCanonicalisable('too_deep');
  if (v === null || typeof v !== 'object') {
    out.push(JSON.stringify(v));
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    v.forEach((x, i) => {
      if (i > 0) out.push(',');
      write(x, depth + 1, out);
    });
    out.push(']');
    return;
  }
  const o = v as Record<string, unknown>;
  out.push('{');
  Object.keys(o)
    .sort()
    .forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(JSON.stringify(k), ':');
      write(o[k], depth + 1, out);
    });
  out.push('}');
}

/** Canonical JSON text of a parsed value (sorted keys, JSON.stringify's scalar forms). */
export function canonicalJson(v: unknown): string {
  const out: string[] = [];
  write(v, 0, out);
  return out.join('');
}

export interface ParsedRequest {
  /** The parsed body (an object). */
  readonly body: Record<string, unknown>;
  /** Its canonical text, with the defaults below removed. */
  readonly canonical: string;
}

/**
 * Parses a request body into its canonical form. Spelled-out defaults that do not change the
 * answer are dropped first (`"stream": false`, `"n": 1`), so they key like their absence.
 * Throws NotCanonicalisable.
 */
export function canonicalRequest(text: string): ParsedRequest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new NotCanonicalisable('not_json');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new NotCanonicalisable('not_object');
  }
  if (hasDuplicateKeys(text)) throw new NotCanonicalisable('duplicate_keys');
  const body = parsed as Record<string, unknown>;
  const keyed: Record<string, unknown> = { ...body };
  if (keyed.stream === false) delete keyed.stream;
  if (keyed.n === 1) delete keyed.n;
  return { body, canonical: canonicalJson(keyed) };
}
