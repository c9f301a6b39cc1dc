/**
 * The request body: refused when it is not what a JSON route accepts (413/415/400), and
 * parsed (rewrite.ts then applies the tenant's tools and persona). Pure functions over the
 * headers and bytes; the plugin does the PDK calls.
 */
import { GatewayError } from '../../lib/http/errors';
import { firstHeader, type HeaderMap } from '../../lib/pdk/kong';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../lib/request/json-depth';

export function badRequest(
  status: number,
  code: string,
  message: string,
  param: string | null = null,
) {
  return new GatewayError({ status, type: 'invalid_request_error', code, message, param });
}

export function bodyTooLarge(maxBytes: number): GatewayError {
  return badRequest(413, 'body_too_large', `request body is larger than ${maxBytes} bytes`);
}

/** What the headers say of the body, before anything is read. */
export interface DeclaredBody {
  /** The client declares a body: Content-Length > 0 or Transfer-Encoding. */
  readonly present: boolean;
  /**
   * Its length is known and within the limit (Content-Length): reading it with the limit as
   * `max_allowed_file_size` is safe. False for a chunked body, whose size Kong learns only by
   * reading it: `get_raw_body(max)` answers nil for one larger than `max`, which the plugin
   * server cannot send back (a Lua error, so a 500), so it is read whole (`getRawBody(0)`,
   * bounded by nginx's `client_max_body_size`) and measured here.
   */
  readonly lengthKnown: boolean;
}

/**
 * From headers alone: does the client declare a body (Content-Length > 0 or chunked)?
 * A declared length over the limit is refused before anything is read (413), a declared body
 * that is not JSON too (415), and so is a compressed one (415): Kong does not decode request
 * bodies, and a gzip body would reach the checks below as bytes that are not JSON.
 */
export function precheckBody(headers: HeaderMap, maxBytes: number): DeclaredBody {
  const length = firstHeader(headers, 'content-length');
  const chunked = firstHeader(headers, 'transfer-encoding') !== undefined;
  const declared = length === undefined ? undefined : Number(length);
  if (declared !== undefined && Number.isFinite(declared) && declared > maxBytes) {
    throw bodyTooLarge(maxBytes);
  }
  const present = chunked || (declared !== undefined && declared > 0);
  if (present) {
    assertJsonContentType(headers);
    assertIdentityEncoding(headers);
  }
  return { present, lengthKnown: !chunked && declared !== undefined && Number.isFinite(declared) };
}

/** 415 for a body sent with a Content-Encoding other than `identity`. */
export function assertIdentityEncoding(headers: HeaderMap): void {
  const encoding = (firstHeader(headers, 'content-encoding') ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return;
  throw badRequest(
    415,
    'unsupported_content_encoding',
    `request bodies sent with Content-Encoding '${printable(encoding, 32)}' are not accepted: send the JSON uncompressed`,
  );
}

export function emptyBody(): GatewayError {
  return badRequest(400, 'empty_body', 'request body is empty: this endpoint takes a JSON object');
}

/** 415 unless the Content-Type is application/json or a +json type. */
export function assertJsonContentType(headers: HeaderMap): void {
  const type =
    (firstHeader(headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(type)) {
    throw badRequest(415, 'unsupported_media_type', 'request body must be application/json');
  }
}

export type JsonObject = Record<string, unknown>;

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Keys that mean something to JavaScript objects rather than to the API: a body carrying one
 * (at any depth, however escaped) is refused, so no plugin or upstream written in JavaScript
 * can be handed a prototype-polluting object by us.
 */
export const FORBIDDEN_JSON_KEYS: ReadonlySet<string> = new Set([
  '__proto__',
  'constructor',
  'prototype',
]);

/** A client string quoted in an error message: printable ASCII only, bounded. */
export function printable(s: string, max: number): string {
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  return cut.replace(/[^\x20-\x7e…]/g, '?');
}

/** Where V8 says the JSON broke, without the excerpt of the body it also quotes. */
function jsonErrorPosition(e: unknown): string {
  const m = /position (\d+)/.exec(e instanceof Error ? e.message : '');
  return m ? ` (at character ${m[1]})` : '';
}

export function parseJsonObject(raw: Buffer, maxBytes: number): JsonObject {
  if (raw.length > maxBytes) {
    throw bodyTooLarge(maxBytes);
  }
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    throw badRequest(400, 'invalid_encoding', 'request body is not valid UTF-8');
  }
  // The reviver costs a walk of every value: only taken when one of the keys (or a \u escape
  // that could spell one) appears in the text at all.
  // A number too large for a double (`1e400`, 309 digits) parses as Infinity, which
  // JSON.stringify writes as null: a rewritten body would forward `"n": null` for `"n": 1e400`.
  // An integer past 2^53 − 1 (16+ digits, or an exponent of 16+) parses to a nearby double:
  // a rewritten body would forward another number than the one sent (a `seed`, a token id).
  const huge = /\d[eE]\+?\d{2}|\d{16}/.test(text);
  const suspicious = huge || /__proto__|constructor|prototype|\\u/.test(text);
  const found: { key: string | null; nonFinite: string | null } = { key: null, nonFinite: null };
  let parsed: unknown;
  try {
    parsed = suspicious
      ? JSON.parse(text, function (this: unknown, key: string, value: unknown) {
          if (found.key === null && FORBIDDEN_JSON_KEYS.has(key)) found.key = key;
          if (found.nonFinite === null && typeof value === 'number' && !exact(value)) {
            found.nonFinite = key;
          }
          return value;
        })
      : JSON.parse(text);
  } catch (e) {
    throw badRequest(400, 'invalid_json', `request body is not valid JSON${jsonErrorPosition(e)}`);
  }
  if (found.key !== null) {
    throw badRequest(
      400,
      'forbidden_json_key',
      `request body contains the key '${found.key}', which is not accepted at any depth`,
      found.key,
    );
  }
  if (found.nonFinite !== null) {
    const name = printable(found.nonFinite, 64);
    throw badRequest(
      400,
      'invalid_number',
      `request body has a number too large to represent exactly${name === '' ? '' : ` in '${name}'`} (integers must lie within ±9007199254740991)`,
      found.nonFinite === '' ? null : name,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw badRequest(400, 'invalid_json', 'request body must be a JSON object');
  }
  if (nestsDeeperThan(parsed, MAX_JSON_DEPTH)) {
    throw badRequest(
      400,
      'json_too_deep',
      `request body nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`,
    );
  }
  return parsed as JsonObject;
}

/** A number JSON carries through a parse and a rewrite unchanged: finite, and a safe integer if whole. */
function exact(n: number): boolean {
  return Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n));
}
