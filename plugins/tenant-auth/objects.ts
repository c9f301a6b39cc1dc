/**
 * `store: scoped` (issue 21 part 2): objects the provider keeps, on a provider key several
 * tenants share, each reachable only by the tenant that made it. The gateway records the owner
 * of every object the provider makes for a tenant (lib/provider-objects/registry.ts), and:
 *
 * - a request naming an object in its path (`GET /files/{id}`, `DELETE /responses/{id}`, …) is
 *   forwarded only when the tenant owns it; otherwise 404 `object_not_found`, the same answer
 *   as for an id that never existed (no oracle for other tenants' ids);
 * - a body naming one (`previous_response_id`, `conversation`, `file_id`, `file_ids`, a batch's
 *   `input_file_id`, `vector_store_ids`) is forwarded only when the tenant owns each (400
 *   `object_not_found`, `param` naming the field); references the gateway does not scope
 *   (a `container` id, an `item_reference`, a reasoning item by id without its
 *   encrypted content) are refused (400 `stored_objects_disabled`);
 * - a list (`GET /files`, `GET /batches`, `GET /chat/completions`, `GET /vector_stores`) is
 *   answered by the gateway
 *   from the tenant's own records (each object as the provider last answered it through the
 *   gateway), never forwarded: the provider's list holds every tenant's objects;
 * - a request that makes an object (`POST /responses` unless `store: false`, `POST
 *   /chat/completions` with `store: true`, `POST /files`, `POST /batches`, `POST /uploads`,
 *   `POST /vector_stores`, `POST /conversations`) is recorded after
 *   the provider answered 2xx: kong.yml's post-function keeps the start of the answer
 *   (lib/capture/answer-snippet.lua, shared with capture), tenant-auth's log reads the id there; a delete
 *   answered 2xx forgets it; a batch read refreshes it and records its output and error files.
 *
 * Uploads (`POST /uploads`, then its parts, `complete` and `cancel`; the file it becomes is the
 * tenant's), vector stores (`POST /vector_stores`, everything under `/vector_stores/{id}`, a
 * Responses `file_search`'s `vector_store_ids`) and conversations (`POST /conversations`,
 * everything under `/conversations/{id}` — its items included —, a Responses `conversation`)
 * are scoped the same way. The other stateful APIs stay refused under `scoped`: assistants and
 * threads (OpenAI's Assistants API, shut down on 2026-08-26; conversations replace threads) and
 * fine-tuning (a job's training is spent at the provider where no budget is reserved, and the
 * model it makes is callable by every holder of the key).
 * Recording happens in the log phase: an object whose log was lost is not the tenant's through
 * the gateway (closed). A reference made before the maker's log ran is looked up once more
 * after a short pause.
 */
import type { KongPdk } from '../../lib/pdk/kong';
import type { ObjectKind, ObjectRegistry } from '../../lib/provider-objects/registry';
import { CHAIN_LOG_OWNER } from '../../lib/request/log-holds';
import { slot, type RequestScope } from '../../lib/request/scope';
import { SHARED_KEYS } from '../../lib/request/shared-keys';
import type { TenantContext } from '../../lib/tenant/context';
import * as metrics from './metrics';
import { decodeSeen, jsonObject, madeId } from '../../lib/provider-objects/answer';
import { guarded, listOptions, notFound, references, snapshotOf } from './object-refs';
import type { SurfaceDecision } from './surface';

/** The stateful APIs `scoped` serves, and the kind of object each names in its path. */
export const SCOPED_APIS: ReadonlyMap<string, ObjectKind> = new Map([
  ['stored_responses', 'response'],
  ['stored_chat_completions', 'chat_completion'],
  ['files', 'file'],
  ['batches', 'batch'],
  ['uploads', 'upload'],
  ['vector_stores', 'vector_store'],
  ['conversations', 'conversation'],
]);

/** Objects whose state changes after they were made: what a read answers is kept for the list. */
const CHANGING: ReadonlySet<ObjectKind> = new Set(['batch', 'upload', 'vector_store']);

/** How long a reference not found yet waits for its maker's log phase before it is refused. */
export const RECHECK_AFTER_MS = 150;

/** Set for a request whose answer the post-function keeps (lib/capture/answer-snippet.lua). */
export const OBJECTS_KEY = SHARED_KEYS.objectCapture.key;
/** Where it keeps it: `all;<answer>` or `cut;<its first 64 KiB>`. */
const ANSWER_KEY = SHARED_KEYS.captureAnswer.key;

/** A list the gateway answers (OpenAI's list shape). */
export interface ListAnswer {
  readonly object: 'list';
  readonly data: readonly unknown[];
  readonly first_id: string | null;
  readonly last_id: string | null;
  readonly has_more: boolean;
}

/** What the log phase does with the provider's answer. */
type After =
  | { readonly op: 'record'; readonly kind: ObjectKind }
  | { readonly op: 'refresh'; readonly kind: ObjectKind; readonly id: string }
  | { readonly op: 'forget'; readonly kind: ObjectKind; readonly id: string };

export class ScopedObjects {
  constructor(readonly registry: ObjectRegistry) {}

  /** True when the tenant owns it now, or after one short wait for a maker's log phase. */
  private async owned(ctx: TenantContext, kind: ObjectKind, id: string): Promise<boolean> {
    if (await guarded(() => this.registry.owns(ctx, kind, id))) return true;
    await new Promise((r) => setTimeout(r, RECHECK_AFTER_MS));
    return guarded(() => this.registry.owns(ctx, kind, id));
  }

  /**
   * A stateful request on a scoped tenant, before the body: refuses an object that is not the
   * tenant's, and arranges the record of what the provider makes. A list is answered here:
   * the page to send (never forwarded); null for every other request.
   */
  async onRequest(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    surface: SurfaceDecision,
    tenantLabel: string,
  ): Promise<ListAnswer | null> {
    const kind = SCOPED_APIS.get(surface.api);
    if (kind === undefined) return null;
    if (surface.id === null) {
      if (surface.method === 'GET' || surface.method === 'HEAD') {
        return this.list(kong, scope, ctx, kind, tenantLabel);
      }
      // POST /files, POST /batches: recorded once the provider answered.
      this.after(scope, ctx, { op: 'record', kind }, tenantLabel);
      return null;
    }
    if (!(await this.owned(ctx, kind, surface.id))) {
      metrics.storedObjects.inc({ tenant: tenantLabel, kind, outcome: 'refused' });
      throw notFound(kind, surface.id, null);
    }
    // The object itself, not something under it (`/vector_stores/{id}`, not `…/{id}/files`).
    const itself = surface.tail === '';
    if (surface.method === 'DELETE' && itself) {
      this.after(scope, ctx, { op: 'forget', kind, id: surface.id }, tenantLabel);
    } else if (
      CHANGING.has(kind) &&
      (itself || surface.tail === '/complete' || surface.tail === '/cancel')
    ) {
      // A batch's status, an upload's file, a vector store's counts change: what the provider
      // answers is kept (and the files it made for the tenant recorded as the tenant's).
      this.after(scope, ctx, { op: 'refresh', kind, id: surface.id }, tenantLabel);
    }
    return null;
  }

  /**
   * A generation or batch body on a scoped tenant: every reference it holds must be to the
   * tenant's own object; a body that makes an object is recorded after the provider answered.
   */
  async onBody(
    scope: RequestScope,
    ctx: TenantContext,
    api: string,
    body: Record<string, unknown>,
    tenantLabel: string,
  ): Promise<void> {
    const refs = references(body);
    const checks = await Promise.all(
      refs.map(async (r) => ({ ...r, ok: await this.owned(ctx, r.kind, r.id) })),
    );
    const bad = checks.find((c) => !c.ok);
    if (bad) {
      metrics.storedObjects.inc({ tenant: tenantLabel, kind: bad.kind, outcome: 'refused' });
      throw notFound(bad.kind, bad.id, bad.param);
    }
    if (api === 'responses' && body.store !== false) {
      this.after(scope, ctx, { op: 'record', kind: 'response' }, tenantLabel);
    } else if (api === 'chat' && body.store === true) {
      this.after(scope, ctx, { op: 'record', kind: 'chat_completion' }, tenantLabel);
    }
  }

  /**
   * Whether the answer must be kept for the record: then kong.ctx.shared says so to the
   * post-function, and the provider is asked for it uncompressed (the id is read from it).
   */
  capturing(scope: RequestScope): boolean {
    return scope.get(CAPTURING) === true;
  }

  private after(scope: RequestScope, ctx: TenantContext, what: After, tenantLabel: string): void {
    if (scope.get(CAPTURING) === true) return;
    scope.set(CAPTURING, true);
    scope.defer({
      plugin: CHAIN_LOG_OWNER,
      order: 40,
      run: (k) => this.settle(k, ctx, what, tenantLabel),
    });
  }

  /** In log: what the provider answered, applied to the registry. */
  private async settle(
    kong: KongPdk,
    ctx: TenantContext,
    what: After,
    tenantLabel: string,
  ): Promise<void> {
    const status = Number(await kong.response.getStatus());
    if (!(status >= 200 && status < 300)) return;
    if (what.op === 'forget') {
      await this.registry.forget(ctx, what.kind, what.id);
      metrics.storedObjects.inc({ tenant: tenantLabel, kind: what.kind, outcome: 'forgotten' });
      return;
    }
    const answer = decodeSeen(await kong.ctx.shared.get(ANSWER_KEY));
    const id = what.op === 'refresh' ? what.id : answer === null ? null : madeId(answer.text);
    if (id === null) {
      metrics.storedObjects.inc({ tenant: tenantLabel, kind: what.kind, outcome: 'unrecorded' });
      void kong.log.warn(
        `tenant-auth: the provider made a ${what.kind} but its id was not found in the answer: not recorded (the tenant cannot reach it through the gateway)`,
      );
      return;
    }
    const snapshot = answer?.whole ? jsonObject(answer.text) : null;
    // A refresh keeps the snapshot only when it is the same object.
    const keep =
      snapshot !== null && (what.op === 'record' || snapshot.id === id) ? snapshot : null;
    // What a list answers: the object, or a summary when it is too large, cut or streamed.
    await this.registry.record(ctx, what.kind, id, answer === null ? null : snapshotOf(answer, id));
    metrics.storedObjects.inc({ tenant: tenantLabel, kind: what.kind, outcome: 'recorded' });
    // Files the provider made for the tenant's object are the tenant's too: a batch's output
    // and error files, the file a completed upload became.
    if (keep !== null) {
      const made = what.kind === 'batch' ? [keep.output_file_id, keep.error_file_id] : [];
      const file = keep.file as Record<string, unknown> | null | undefined;
      if (what.kind === 'upload' && file && typeof file === 'object') made.push(file.id);
      for (const f of made) {
        if (typeof f !== 'string' || f === '') continue;
        const snap = what.kind === 'upload' ? JSON.stringify(file) : null;
        await this.registry.record(ctx, 'file', f, snap);
      }
    }
  }

  /** `GET` of a scoped list: the tenant's own records, in OpenAI's list shape. */
  private async list(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    kind: ObjectKind,
    tenantLabel: string,
  ): Promise<ListAnswer> {
    const query = new URLSearchParams((await scope.pathWithQuery(kong)).split('?')[1] ?? '');
    const opts = listOptions(query);
    const page = await guarded(() => this.registry.list(ctx, kind, opts));
    const object = OBJECT_NAMES[kind];
    const data = page.items.map((o) => o.snapshot ?? { id: o.id, object });
    metrics.storedObjects.inc({ tenant: tenantLabel, kind, outcome: 'listed' });
    return {
      object: 'list',
      data,
      first_id: page.items[0]?.id ?? null,
      last_id: page.items[page.items.length - 1]?.id ?? null,
      has_more: page.hasMore,
    };
  }
}

const CAPTURING = slot<boolean>('tenant-auth:objects:capturing');

const OBJECT_NAMES: Record<ObjectKind, string> = {
  response: 'response',
  chat_completion: 'chat.completion',
  file: 'file',
  batch: 'batch',
  upload: 'upload',
  vector_store: 'vector_store',
  conversation: 'conversation',
};
