/**
 * The objects a provider keeps under its API key: stored responses, stored chat completions,
 * files and batches, in one store for every caller, as OpenAI keeps them per project. Whoever
 * holds the key (a gateway serving several tenants with one key) reads, lists, continues and
 * deletes all of them: the gateway's `store: scoped` must keep each tenant to its own.
 *
 * Endpoints (OpenAI's shapes, trimmed to what a client reads): `POST /v1/responses` (JSON or
 * SSE, stored unless `store: false`, `previous_response_id` must name a stored response),
 * `GET|DELETE /v1/responses/{id}`, `GET …/input_items`, `POST …/cancel`; stored chat
 * completions (`GET /v1/chat/completions`, `GET|POST|DELETE /v1/chat/completions/{id}`,
 * `GET …/messages`, made by the chat endpoint with `store: true`); `POST /v1/files` (multipart
 * or JSON), `GET /v1/files`, `GET|DELETE /v1/files/{id}`, `GET …/content`; `POST /v1/batches`
 * (its `input_file_id` must exist), `GET /v1/batches`, `GET /v1/batches/{id}` (the first read
 * completes it, with an output file), `POST …/cancel`; `POST /v1/uploads`, its `parts`,
 * `complete` (the upload becomes a file) and `cancel`; `POST|GET /v1/vector_stores`,
 * `GET|DELETE /v1/vector_stores/{id}`, `GET …/files`, `POST …/search`; `POST /v1/conversations`
 * (its `items` kept), `GET|POST|DELETE /v1/conversations/{id}`, `GET|POST …/items`, `GET|DELETE
 * …/items/{item_id}`; a response made with `conversation` must name a kept one, and its input
 * and output are added to the conversation's items.
 */
import { randomBytes } from 'node:crypto';
import type { Endpoint, EndpointContext } from './endpoint';
import { batchChatAnswer } from './chat';
import { errorBody, sendJson } from './openai-error';

type Kind =
  'response' | 'chat_completion' | 'file' | 'batch' | 'upload' | 'vector_store' | 'conversation';

interface Kept {
  readonly kind: Kind;
  obj: Record<string, unknown>;
  readonly input?: unknown;
  readonly content?: Buffer;
  /** An upload's parts, in the order they came. */
  readonly parts?: Buffer[];
}

export interface ObjectStore {
  /** The endpoint for a stored-object request, or undefined for any other. */
  endpoint(method: string, path: string): Endpoint | undefined;
  /** After the chat endpoint answered: a `store: true` completion is kept. */
  afterChat(ctx: EndpointContext): void;
  /** Ids kept now, by kind. */
  ids(kind: Kind): string[];
  reset(): void;
}

const now = () => Math.floor(Date.now() / 1000);
const answer = (ctx: EndpointContext, body: unknown) => sendJson(ctx.res, 200, body);
const hex = () => randomBytes(8).toString('hex');

function notFound(ctx: EndpointContext, what: string, id: string): void {
  sendJson(ctx.res, 404, errorBody(`No ${what} found with id '${id}'.`, 'invalid_request_error'));
}

function bad(ctx: EndpointContext, message: string, param: string): void {
  sendJson(ctx.res, 400, errorBody(message, 'invalid_request_error', param));
}

function json(ctx: EndpointContext): Record<string, unknown> {
  try {
    const v = JSON.parse(ctx.rawBody.toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

/** `purpose`, the file's name and bytes out of a multipart form (or a JSON body's `purpose`). */
function fileUpload(ctx: EndpointContext): { purpose: string; filename: string; content: Buffer } {
  const type = String(ctx.req.headers['content-type'] ?? '');
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(type);
  if (!boundary) {
    const body = json(ctx);
    return {
      purpose: String(body.purpose ?? 'batch'),
      filename: String(body.filename ?? 'upload.jsonl'),
      content: Buffer.from(String(body.content ?? '')),
    };
  }
  const text = ctx.rawBody.toString('latin1');
  const parts = text.split(`--${boundary[1] ?? boundary[2]}`);
  let purpose = 'batch';
  let filename = 'upload';
  let content = Buffer.alloc(0);
  for (const part of parts) {
    const split = part.indexOf('\r\n\r\n');
    if (split < 0) continue;
    const head = part.slice(0, split);
    const value = part.slice(split + 4).replace(/\r\n$/, '');
    const name = /name="([^"]*)"/.exec(head)?.[1];
    if (name === 'purpose') purpose = value;
    if (name === 'file' || name === 'data') {
      filename = /filename="([^"]*)"/.exec(head)?.[1] ?? filename;
      content = Buffer.from(value, 'latin1');
    }
  }
  return { purpose, filename, content };
}

/** A Responses `conversation`: its id, or `{id}`. */
function conversationOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string') {
    return (v as { id: string }).id;
  }
  return null;
}

export function createObjectStore(): ObjectStore {
  const kept = new Map<string, Kept>();
  const get = (kind: Kind, id: string) => {
    const k = kept.get(id);
    return k?.kind === kind ? k : undefined;
  };
  const list = (ctx: EndpointContext, kind: Kind) => {
    const data = [...kept.values()].filter((k) => k.kind === kind).map((k) => k.obj);
    answer(ctx, {
      object: 'list',
      data,
      first_id: (data[0]?.id as string | undefined) ?? null,
      last_id: (data[data.length - 1]?.id as string | undefined) ?? null,
      has_more: false,
    });
  };

  const createResponse: Endpoint = async (ctx) => {
    const body = json(ctx);
    const previous = body.previous_response_id;
    if (typeof previous === 'string' && !get('response', previous)) {
      bad(ctx, `Previous response with id '${previous}' not found.`, 'previous_response_id');
      return;
    }
    const conv = conversationOf(body.conversation);
    if (conv !== null && !get('conversation', conv)) {
      bad(ctx, `Conversation with id '${conv}' not found.`, 'conversation');
      return;
    }
    const id = `resp_${hex()}`;
    const text = `mock answer ${id}`;
    const usage = { input_tokens: 8, output_tokens: 4, total_tokens: 12 };
    const obj: Record<string, unknown> = {
      id,
      object: 'response',
      created_at: now(),
      status: 'completed',
      model: body.model ?? 'gpt-4o-mini',
      previous_response_id: previous ?? null,
      store: body.store !== false,
      output: [
        {
          type: 'message',
          id: `msg_${hex()}`,
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text, annotations: [] }],
        },
      ],
      usage,
    };
    if (body.store !== false) kept.set(id, { kind: 'response', obj, input: body.input });
    if (conv !== null) {
      const items = get('conversation', conv)?.input as unknown[];
      if (typeof body.input === 'string') {
        items.push({ type: 'message', id: `msg_${hex()}`, role: 'user', content: body.input });
      } else if (Array.isArray(body.input)) items.push(...(body.input as unknown[]));
      items.push(...(obj.output as unknown[]));
    }
    ctx.onUsage?.({ prompt_tokens: usage.input_tokens, completion_tokens: usage.output_tokens });
    if (body.stream !== true) {
      answer(ctx, obj);
      return;
    }
    ctx.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (type: string, data: Record<string, unknown>, n: number) =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: n, ...data })}\n\n`;
    ctx.res.write(
      event('response.created', { response: { ...obj, status: 'in_progress', usage: null } }, 0),
    );
    ctx.res.write(event('response.output_text.delta', { item_id: 'msg', delta: text }, 1));
    ctx.res.end(event('response.completed', { response: obj }, 2));
  };

  const byId =
    (kind: Kind, what: string, act: (ctx: EndpointContext, k: Kept, id: string) => void) =>
    (id: string): Endpoint =>
    async (ctx) => {
      const k = get(kind, id);
      if (!k) notFound(ctx, what, id);
      else act(ctx, k, id);
    };

  const routes: Array<[string, RegExp, (id: string) => Endpoint]> = [
    ['POST', /^\/v1\/responses$/, () => createResponse],
    ['GET', /^\/v1\/responses\/([^/]+)$/, byId('response', 'response', (c, k) => answer(c, k.obj))],
    [
      'DELETE',
      /^\/v1\/responses\/([^/]+)$/,
      byId('response', 'response', (c, _k, id) => {
        kept.delete(id);
        answer(c, { id, object: 'response', deleted: true });
      }),
    ],
    [
      'GET',
      /^\/v1\/responses\/([^/]+)\/input_items$/,
      byId('response', 'response', (c, k) =>
        answer(c, {
          object: 'list',
          data:
            typeof k.input === 'string'
              ? [{ type: 'message', role: 'user', content: k.input }]
              : (k.input ?? []),
          has_more: false,
        }),
      ),
    ],
    [
      'POST',
      /^\/v1\/responses\/([^/]+)\/cancel$/,
      byId('response', 'response', (c, k) => answer(c, k.obj)),
    ],
    ['GET', /^\/v1\/chat\/completions$/, () => async (ctx) => list(ctx, 'chat_completion')],
    [
      'GET',
      /^\/v1\/chat\/completions\/([^/]+)$/,
      byId('chat_completion', 'chat completion', (c, k) => answer(c, k.obj)),
    ],
    [
      'POST',
      /^\/v1\/chat\/completions\/([^/]+)$/,
      byId('chat_completion', 'chat completion', (c, k) => {
        k.obj = { ...k.obj, metadata: json(c).metadata ?? null };
        answer(c, k.obj);
      }),
    ],
    [
      'DELETE',
      /^\/v1\/chat\/completions\/([^/]+)$/,
      byId('chat_completion', 'chat completion', (c, _k, id) => {
        kept.delete(id);
        answer(c, { object: 'chat.completion.deleted', id, deleted: true });
      }),
    ],
    [
      'GET',
      /^\/v1\/chat\/completions\/([^/]+)\/messages$/,
      byId('chat_completion', 'chat completion', (c, k) =>
        answer(c, { object: 'list', data: k.input ?? [], has_more: false }),
      ),
    ],
    [
      'POST',
      /^\/v1\/files$/,
      () => async (ctx) => {
        const up = fileUpload(ctx);
        const id = `file-${hex()}`;
        const obj = {
          object: 'file',
          id,
          bytes: up.content.length,
          created_at: now(),
          filename: up.filename,
          purpose: up.purpose,
          status: 'processed',
        };
        kept.set(id, { kind: 'file', obj, content: up.content });
        answer(ctx, obj);
      },
    ],
    ['GET', /^\/v1\/files$/, () => async (ctx) => list(ctx, 'file')],
    ['GET', /^\/v1\/files\/([^/]+)$/, byId('file', 'file', (c, k) => answer(c, k.obj))],
    [
      'DELETE',
      /^\/v1\/files\/([^/]+)$/,
      byId('file', 'file', (c, _k, id) => {
        kept.delete(id);
        answer(c, { object: 'file', id, deleted: true });
      }),
    ],
    [
      'GET',
      /^\/v1\/files\/([^/]+)\/content$/,
      byId('file', 'file', (c, k) => {
        c.res.writeHead(200, { 'content-type': 'application/octet-stream' });
        c.res.end(k.content ?? Buffer.alloc(0));
      }),
    ],
    [
      'POST',
      /^\/v1\/batches$/,
      () => async (ctx) => {
        const body = json(ctx);
        const input = body.input_file_id;
        if (typeof input !== 'string' || !get('file', input)) {
          bad(ctx, `File with id '${String(input)}' not found.`, 'input_file_id');
          return;
        }
        const id = `batch_${hex()}`;
        const obj = {
          id,
          object: 'batch',
          endpoint: body.endpoint ?? '/v1/chat/completions',
          input_file_id: input,
          completion_window: body.completion_window ?? '24h',
          metadata: body.metadata ?? null,
          status: 'validating',
          output_file_id: null,
          error_file_id: null,
          created_at: now(),
        };
        kept.set(id, { kind: 'batch', obj });
        answer(ctx, obj);
      },
    ],
    ['GET', /^\/v1\/batches$/, () => async (ctx) => list(ctx, 'batch')],
    [
      'GET',
      /^\/v1\/batches\/([^/]+)$/,
      byId('batch', 'batch', (c, k) => {
        // The first read finds it done: every chat line answered as the chat endpoint would,
        // the output kept as a file of the provider's, and the batch's usage summed (OpenAI's
        // `usage` on a batch). `metadata.mock_status: failed` fails it (no usage), and
        // `metadata.mock_usage: none` leaves the usage out (a provider that reports none).
        if (k.obj.status === 'validating') k.obj = finishBatch(k.obj);
        answer(c, k.obj);
      }),
    ],
    [
      'POST',
      /^\/v1\/batches\/([^/]+)\/cancel$/,
      byId('batch', 'batch', (c, k) => {
        k.obj = { ...k.obj, status: 'cancelling' };
        answer(c, k.obj);
      }),
    ],
  ];

  /** A batch run to its end: its output file and its usage (see the read above). */
  function finishBatch(obj: Record<string, unknown>): Record<string, unknown> {
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    if (meta.mock_status === 'failed') {
      return {
        ...obj,
        status: 'failed',
        failed_at: now(),
        request_counts: { total: 0, completed: 0, failed: 0 },
      };
    }
    const input = get('file', String(obj.input_file_id))?.content ?? Buffer.alloc(0);
    const out: string[] = [];
    let prompt = 0;
    let completion = 0;
    let done = 0;
    let failed = 0;
    for (const raw of input.toString('utf8').split('\n')) {
      if (raw.trim() === '') continue;
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        failed += 1;
        continue;
      }
      const rid = `batch_req_${hex()}`;
      try {
        if (line.url !== '/v1/chat/completions') throw new Error(`the mock runs chat lines only`);
        const a = batchChatAnswer(line.body as Record<string, unknown>, rid);
        prompt += a.usage.prompt_tokens;
        completion += a.usage.completion_tokens;
        done += 1;
        out.push(
          JSON.stringify({
            id: rid,
            custom_id: line.custom_id,
            response: { status_code: 200, request_id: rid, body: a.body },
            error: null,
          }),
        );
      } catch (e) {
        failed += 1;
        out.push(
          JSON.stringify({
            id: rid,
            custom_id: line.custom_id,
            response: null,
            error: { code: 'invalid_request', message: String(e) },
          }),
        );
      }
    }
    const file = `file-${hex()}`;
    const content = Buffer.from(out.map((l) => `${l}\n`).join(''));
    kept.set(file, {
      kind: 'file',
      obj: fileObject(file, 'batch_output.jsonl', 'batch_output', content),
      content,
    });
    const usage =
      meta.mock_usage === 'none'
        ? {}
        : {
            usage: {
              input_tokens: prompt,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: completion,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: prompt + completion,
            },
          };
    return {
      ...obj,
      status: 'completed',
      completed_at: now(),
      output_file_id: file,
      request_counts: { total: done + failed, completed: done, failed },
      ...usage,
    };
  }

  const fileObject = (id: string, filename: string, purpose: string, content: Buffer) => ({
    object: 'file',
    id,
    bytes: content.length,
    created_at: now(),
    filename,
    purpose,
    status: 'processed',
  });
  routes.push(
    [
      'POST',
      /^\/v1\/uploads$/,
      () => async (ctx) => {
        const body = json(ctx);
        const id = `upload_${hex()}`;
        const obj = {
          id,
          object: 'upload',
          bytes: body.bytes ?? 0,
          created_at: now(),
          filename: body.filename ?? 'upload',
          purpose: body.purpose ?? 'batch',
          status: 'pending',
          file: null,
        };
        kept.set(id, { kind: 'upload', obj, parts: [] });
        answer(ctx, obj);
      },
    ],
    [
      'POST',
      /^\/v1\/uploads\/([^/]+)\/parts$/,
      byId('upload', 'upload', (c, k, id) => {
        k.parts?.push(fileUpload(c).content);
        answer(c, { id: `part_${hex()}`, object: 'upload.part', created_at: now(), upload_id: id });
      }),
    ],
    [
      'POST',
      /^\/v1\/uploads\/([^/]+)\/complete$/,
      byId('upload', 'upload', (c, k) => {
        const content = Buffer.concat(k.parts ?? []);
        const fileId = `file-${hex()}`;
        const file = fileObject(fileId, String(k.obj.filename), String(k.obj.purpose), content);
        kept.set(fileId, { kind: 'file', obj: file, content });
        k.obj = { ...k.obj, status: 'completed', file };
        answer(c, k.obj);
      }),
    ],
    [
      'POST',
      /^\/v1\/uploads\/([^/]+)\/cancel$/,
      byId('upload', 'upload', (c, k) => {
        k.obj = { ...k.obj, status: 'cancelled' };
        answer(c, k.obj);
      }),
    ],
    [
      'POST',
      /^\/v1\/vector_stores$/,
      () => async (ctx) => {
        const body = json(ctx);
        const files = Array.isArray(body.file_ids) ? body.file_ids.map(String) : [];
        const missing = files.find((f) => !get('file', f));
        if (missing !== undefined) {
          bad(ctx, `File with id '${missing}' not found.`, 'file_ids');
          return;
        }
        const id = `vs_${hex()}`;
        const obj = {
          id,
          object: 'vector_store',
          created_at: now(),
          name: body.name ?? null,
          status: 'completed',
          file_counts: { completed: files.length, total: files.length },
        };
        kept.set(id, { kind: 'vector_store', obj, input: files });
        answer(ctx, obj);
      },
    ],
    ['GET', /^\/v1\/vector_stores$/, () => async (ctx) => list(ctx, 'vector_store')],
    [
      'GET',
      /^\/v1\/vector_stores\/([^/]+)$/,
      byId('vector_store', 'vector store', (c, k) => answer(c, k.obj)),
    ],
    [
      'DELETE',
      /^\/v1\/vector_stores\/([^/]+)$/,
      byId('vector_store', 'vector store', (c, _k, id) => {
        kept.delete(id);
        answer(c, { id, object: 'vector_store.deleted', deleted: true });
      }),
    ],
    [
      'GET',
      /^\/v1\/vector_stores\/([^/]+)\/files$/,
      byId('vector_store', 'vector store', (c, k) =>
        answer(c, {
          object: 'list',
          data: ((k.input as string[]) ?? []).map((f) => ({ id: f, object: 'vector_store.file' })),
          has_more: false,
        }),
      ),
    ],
    [
      'POST',
      /^\/v1\/vector_stores\/([^/]+)\/search$/,
      byId('vector_store', 'vector store', (c, k) =>
        answer(c, {
          object: 'vector_store.search_results.page',
          data: ((k.input as string[]) ?? []).map((f) => ({ file_id: f, score: 0.5, content: [] })),
          has_more: false,
        }),
      ),
    ],
    [
      'POST',
      /^\/v1\/conversations$/,
      () => async (ctx) => {
        const body = json(ctx);
        const id = `conv_${hex()}`;
        const obj = {
          id,
          object: 'conversation',
          created_at: now(),
          metadata: body.metadata ?? {},
        };
        const items = Array.isArray(body.items) ? [...(body.items as unknown[])] : [];
        kept.set(id, { kind: 'conversation', obj, input: items });
        answer(ctx, obj);
      },
    ],
    [
      'GET',
      /^\/v1\/conversations\/([^/]+)$/,
      byId('conversation', 'conversation', (c, k) => answer(c, k.obj)),
    ],
    [
      'POST',
      /^\/v1\/conversations\/([^/]+)$/,
      byId('conversation', 'conversation', (c, k) => {
        k.obj = { ...k.obj, metadata: json(c).metadata ?? k.obj.metadata };
        answer(c, k.obj);
      }),
    ],
    [
      'DELETE',
      /^\/v1\/conversations\/([^/]+)$/,
      byId('conversation', 'conversation', (c, _k, id) => {
        kept.delete(id);
        answer(c, { id, object: 'conversation.deleted', deleted: true });
      }),
    ],
    [
      'GET',
      /^\/v1\/conversations\/([^/]+)\/items$/,
      byId('conversation', 'conversation', (c, k) =>
        answer(c, { object: 'list', data: k.input ?? [], has_more: false }),
      ),
    ],
    [
      'POST',
      /^\/v1\/conversations\/([^/]+)\/items$/,
      byId('conversation', 'conversation', (c, k) => {
        const added = Array.isArray(json(c).items) ? (json(c).items as unknown[]) : [];
        (k.input as unknown[]).push(...added);
        answer(c, { object: 'list', data: added, has_more: false });
      }),
    ],
  );

  return {
    endpoint(method, path) {
      for (const [m, pattern, make] of routes) {
        const match = m === method ? pattern.exec(path) : null;
        if (match) return make(decodeURIComponent(match[1] ?? ''));
      }
      return undefined;
    },
    afterChat(ctx) {
      const body = json(ctx);
      if (body.store !== true || !ctx.res.statusCode || ctx.res.statusCode >= 300) return;
      const id = `chatcmpl-${ctx.requestId}`;
      kept.set(id, {
        kind: 'chat_completion',
        obj: { id, object: 'chat.completion', created: now(), model: body.model ?? null },
        input: body.messages ?? [],
      });
    },
    ids: (kind) => [...kept.values()].filter((k) => k.kind === kind).map((k) => String(k.obj.id)),
    reset: () => kept.clear(),
  };
}
