/**
 * The pure half of `store: scoped` (objects.ts): its refusals, the references a body makes to
 * provider objects, a list's options, and what kong.yml's post-function kept of an answer.
 * No PDK and no Redis here: each is tested alone (test/unit/stored-objects.test.ts).
 */
import { GatewayError } from '../../lib/http/errors';
import { jsonObject } from '../../lib/provider-objects/answer';
import { MAX_SNAPSHOT_BYTES, type ObjectKind } from '../../lib/provider-objects/registry';
import { printable } from './body';

/** Body fields naming an object the registry scopes, and its kind. */
const SCOPED_REFERENCES: ReadonlyMap<string, ObjectKind> = new Map([
  ['previous_response_id', 'response'],
  ['file_id', 'file'],
  ['file_ids', 'file'],
  ['input_file_id', 'file'],
  ['vector_store_ids', 'vector_store'],
  ['conversation', 'conversation'],
]);

/** Body fields naming an object the registry does not follow: refused under `scoped`. */
const UNSCOPED_REFERENCES = new Set(['container']);

export function notFound(kind: ObjectKind, id: string, param: string | null): GatewayError {
  return new GatewayError({
    status: param === null ? 404 : 400,
    type: 'invalid_request_error',
    code: 'object_not_found',
    message: `no ${kind.replace('_', ' ')} with id '${printable(id, 64)}' among your tenant's objects`,
    param,
  });
}

export function unscoped(param: string, why: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'stored_objects_disabled',
    message: `'${param}' ${why}: this gateway scopes stored responses, chat completions, files, batches, uploads, vector stores and conversations to your tenant, not these`,
    param,
  });
}

export const unavailable = () =>
  new GatewayError({
    status: 503,
    type: 'server_error',
    code: 'stored_objects_unavailable',
    message: 'the record of your stored objects cannot be read right now; try again',
    headers: { 'Retry-After': '1' },
  });

/** A registry call whose failure closes the request (503), never opens it. */
export async function guarded<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch {
    throw unavailable();
  }
}

/** `limit` (1..100, default 20), `order` (`desc` default), `after`; anything else 400. */
export function listOptions(query: URLSearchParams): {
  limit: number;
  order: 'asc' | 'desc';
  after: string | null;
} {
  const bad = (param: string, message: string) =>
    new GatewayError({
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_list_parameter',
      message,
      param,
    });
  const rawLimit = query.get('limit');
  const limit = rawLimit === null ? 20 : Number(rawLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100 || !/^\d+$/.test(rawLimit ?? '20')) {
    throw bad('limit', 'limit must be a whole number from 1 to 100');
  }
  const order = query.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw bad('order', "order must be 'asc' or 'desc'");
  const after = query.get('after');
  return { limit, order, after: after === null || after === '' ? null : after };
}

interface Reference {
  readonly param: string;
  readonly kind: ObjectKind;
  readonly id: string;
}

/**
 * Every reference to a provider object in a body, at any depth; throws on one the registry
 * does not scope. An id that is not a string is the provider's to refuse (it names nothing).
 */
export function references(body: unknown): Reference[] {
  const out: Reference[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    const o = v as Record<string, unknown>;
    if (o.type === 'item_reference') {
      throw unscoped('item_reference', 'names an item of a stored response by id');
    }
    if (o.type === 'reasoning' && typeof o.id === 'string' && !o.encrypted_content) {
      throw unscoped(
        'id',
        'names a stored reasoning item: send it with its encrypted_content, or continue with previous_response_id',
      );
    }
    for (const [k, x] of Object.entries(o)) {
      const kind = SCOPED_REFERENCES.get(k);
      if (kind !== undefined) {
        for (const v of Array.isArray(x) ? x : [x]) {
          // A Responses `conversation` is its id or `{id}`.
          const id =
            kind === 'conversation' && v !== null && typeof v === 'object'
              ? (v as { id?: unknown }).id
              : v;
          if (typeof id === 'string' && id !== '') out.push({ param: k, kind, id });
        }
      } else if (UNSCOPED_REFERENCES.has(k) && x !== null && x !== '' && !emptyArray(x)) {
        // A code-interpreter `container` may be `{type: "auto"}`: a new one, no reference.
        if (!(k === 'container' && typeof x === 'object' && !Array.isArray(x))) {
          throw unscoped(k, 'names an object kept at the provider');
        }
      }
      walk(x);
    }
  };
  walk(body);
  return out;
}

const emptyArray = (x: unknown) => Array.isArray(x) && x.length === 0;

/** Longest string field a summary keeps (an instruction or a name, not a document). */
const SUMMARY_STRING_MAX = 512;
/** Small objects a summary keeps whole: what a list's reader looks for besides the scalars. */
const SUMMARY_OBJECTS = new Set(['usage', 'metadata', 'file_counts', 'request_counts']);

/** A streamed object's kind in its list: a chunk's `object` names the whole it belongs to. */
const STREAMED_OBJECT: Readonly<Record<string, string>> = {
  'chat.completion.chunk': 'chat.completion',
};

/**
 * What a list keeps of an object the provider answered through the gateway, as JSON:
 * - the answer itself when it is one whole JSON object of at most MAX_SNAPSHOT_BYTES;
 * - otherwise a summary of it, marked `"_gateway_summary": true`: its top-level scalars
 *   (strings up to 512 characters) and its small `usage`, `metadata`, `file_counts` and
 *   `request_counts`, from a whole object that is too large, or from the first event of a
 *   stream (a chat completion's first chunk, a response's `response.created`), or from the
 *   fields before the first nested value of an answer cut at 64 KiB;
 * - null when nothing in it is the object `id` (then it is listed by id only).
 */
export function snapshotOf(answer: { text: string; whole: boolean }, id: string): string | null {
  const obj = answer.whole ? jsonObject(answer.text) : null;
  if (obj !== null) {
    if (obj.id !== id) return null;
    if (Buffer.byteLength(answer.text) <= MAX_SNAPSHOT_BYTES) return answer.text;
    return summary(obj);
  }
  const event = firstEvent(answer.text);
  if (event !== null) {
    // `response.created` (and the other Responses events) carry the response itself.
    const inner = event.response;
    const o =
      inner !== null && typeof inner === 'object' && !Array.isArray(inner)
        ? (inner as Record<string, unknown>)
        : event;
    if (o.id !== id) return null;
    const object = typeof o.object === 'string' ? (STREAMED_OBJECT[o.object] ?? o.object) : null;
    return summary({ ...o, ...(object !== null ? { object } : {}) });
  }
  const head = cutHead(answer.text);
  return head !== null && head.id === id ? summary(head) : null;
}

function summary(o: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (
      v === null ||
      typeof v === 'number' ||
      typeof v === 'boolean' ||
      (typeof v === 'string' && v.length <= SUMMARY_STRING_MAX)
    ) {
      out[k] = v;
    } else if (
      SUMMARY_OBJECTS.has(k) &&
      typeof v === 'object' &&
      JSON.stringify(v).length <= 2048
    ) {
      out[k] = v;
    }
  }
  out._gateway_summary = true;
  return JSON.stringify(out);
}

/** The JSON of a stream's first `data:` line, when it is an object. */
function firstEvent(text: string): Record<string, unknown> | null {
  const m = /^data: ?(\{.*)$/m.exec(text);
  return m?.[1] === undefined ? null : jsonObject(m[1]);
}

/**
 * The top-level fields of a cut JSON object up to its first nested value: OpenAI's objects
 * put `id`, `object`, `created`, `model` and `status` first.
 */
function cutHead(text: string): Record<string, unknown> | null {
  const t = text.trimStart();
  if (!t.startsWith('{')) return null;
  const nested = /[[{]/.exec(t.slice(1));
  const prefix = nested === null ? t : t.slice(0, nested.index + 1);
  // Back to the last complete `"key": value,` before the nested value.
  const cut = prefix.lastIndexOf(',');
  if (cut < 0) return null;
  return jsonObject(`${prefix.slice(0, cut)}}`);
}
