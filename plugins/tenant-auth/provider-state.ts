/**
 * Objects the provider keeps (issue 21 part 2): stored responses and chat completions, files,
 * uploads, batches, vector stores, assistants, threads, fine-tuning jobs, conversations. The
 * provider keeps them under the provider key, not under our tenant: with one key shared by
 * several tenants, whoever holds an object's id (or lists them) reads it, continues it
 * (`previous_response_id`) or deletes it. So a tenant on a shared key makes, reaches or
 * references one only where the gateway records who made it (`scoped`, objects.ts):
 *
 * - `store` (top level, per plan, per tenant): `auto` (the default) is on for a tenant whose
 *   provider key is its own (`upstream_auth.tenants`), off for one on a plan key, the default
 *   key or the service's; `on` is the operator vouching that the key is the tenant's alone (a
 *   provider project per tenant behind a plan key, say); `scoped` keeps objects on any key,
 *   each recorded under the tenant that made it and reachable only by it (stored responses,
 *   stored chat completions, files, batches, uploads, vector stores, conversations; assistants,
 *   threads and fine-tuning stay refused); `off` is never.
 * - Store off: the stateful APIs are refused (403 `stored_objects_disabled`) even where
 *   `api_surface` lists them; a Responses request is sent with `store: false` (the provider's
 *   default is true: the response would be kept where no one may read it back), and in it an
 *   explicit `store: true` and every reference to a stored object (`previous_response_id`,
 *   `conversation`, `file_id`, `file_ids`, `input_file_id`, `vector_store_ids`, a `container`
 *   id, an `item_reference` input item) are refused (400 `stored_objects_disabled`, `param`
 *   naming the field), wherever they sit in the body.
 *
 * So on a shared key no object of one tenant can be made, read, listed, continued or deleted by
 * another: none is made. With a key of its own, the provider's project boundary is the tenant's.
 */
import { GatewayError } from '../../lib/http/errors';
import type { TenantAuthConfig } from './config';

/** The `store` setting (config.ts, read off the schema). */
export type StoreMode = TenantAuthConfig['store'];

/** The APIs whose objects the provider keeps (lib/http/api-surface.ts names). */
export const STATEFUL_APIS: ReadonlySet<string> = new Set([
  'stored_chat_completions',
  'stored_responses',
  'files',
  'uploads',
  'batches',
  'vector_stores',
  'assistants',
  'threads',
  'fine_tuning',
  'conversations',
]);

/**
 * The generation API whose body is policed: the Responses API stores by default and continues
 * a stored response by id (`previous_response_id`, `conversation`). A chat completion is stored
 * only on `store: true` and read back only through `stored_chat_completions`, which a tenant on a
 * shared key is refused: its chat bodies are not read for this (no PDK call added to them).
 */
export const STORING_APIS: ReadonlySet<string> = new Set(['responses']);

/** Body fields that name an object the provider keeps. */
const REFERENCES = new Set([
  'previous_response_id',
  'conversation',
  'file_id',
  'file_ids',
  'input_file_id',
  'vector_store_ids',
  'container',
]);

export interface StoreConfig {
  store: StoreMode;
  plans: Record<string, { store?: StoreMode | null }>;
  tenants: Record<string, { store?: StoreMode | null }>;
}

export class ProviderState {
  constructor(
    private readonly cfg: StoreConfig,
    /** True when the tenant's provider key is its own (upstream_auth.tenants). */
    private readonly ownKey: (tenant: string) => boolean,
  ) {}

  /** The tenant's `store` setting: its own, else its plan's, else the top level's. */
  mode(plan: string, tenant: string): StoreMode {
    const own = (o: Record<string, { store?: StoreMode | null }>, k: string) =>
      Object.prototype.hasOwnProperty.call(o, k) ? (o[k]?.store ?? null) : null;
    return own(this.cfg.tenants, tenant) ?? own(this.cfg.plans, plan) ?? this.cfg.store;
  }

  /** Whether the provider may keep objects for this tenant under a key that is its alone. */
  storeOn(plan: string, tenant: string): boolean {
    const mode = this.mode(plan, tenant);
    return mode === 'on' || (mode === 'auto' && this.ownKey(tenant));
  }

  /** Whether the tenant's objects are kept on any key, each reachable only by it (objects.ts). */
  scoped(plan: string, tenant: string): boolean {
    return this.mode(plan, tenant) === 'scoped';
  }

  /** Whether any tenant may be `scoped` (the record of owners is then needed). */
  get anyScoped(): boolean {
    const modes = [
      this.cfg.store,
      ...Object.values(this.cfg.plans).map((p) => p.store),
      ...Object.values(this.cfg.tenants).map((t) => t.store),
    ];
    return modes.includes('scoped');
  }
}

const disabled = (message: string, param: string | null, status: 400 | 403) =>
  new GatewayError({
    status,
    type: status === 403 ? 'permission_error' : 'invalid_request_error',
    code: 'stored_objects_disabled',
    message,
    param,
  });

/** A stateful API asked for by a tenant whose objects may not be kept. */
export function statefulRefusal(api: string, plan: string): GatewayError {
  return disabled(
    `the ${api} API keeps objects at the provider, which is off for your tenant on the '${plan}' plan: its provider key is shared with other tenants`,
    null,
    403,
  );
}

/** A stateful API the gateway does not scope, asked for by a `scoped` tenant. */
export function unscopedRefusal(api: string, plan: string): GatewayError {
  return disabled(
    `the ${api} API keeps objects at the provider that this gateway does not scope to your tenant on the '${plan}' plan (it scopes stored responses, stored chat completions, files, batches, uploads, vector stores and conversations): it needs a provider key of your tenant's own`,
    null,
    403,
  );
}

/**
 * A generation body on a tenant whose objects may not be kept: refuses a reference to a stored
 * object or an explicit `store: true`; sets `store: false` on a Responses request that does not
 * say it. Returns true when the body changed.
 */
export function unstore(body: Record<string, unknown>, api: string): boolean {
  const found = findReference(body);
  if (found !== null) {
    throw disabled(
      `'${found}' names an object kept at the provider, which is off for your tenant: its provider key is shared with other tenants`,
      found,
      400,
    );
  }
  if (body.store === true) {
    throw disabled(
      'store: true is not available to your tenant: its provider key is shared with other tenants',
      'store',
      400,
    );
  }
  if (api === 'responses' && body.store !== false) {
    body.store = false;
    return true;
  }
  return false;
}

/** The first reference field with a value (not null, not empty), at any depth. */
function findReference(v: unknown): string | null {
  if (Array.isArray(v)) {
    for (const x of v) {
      const f = findReference(x);
      if (f !== null) return f;
    }
  } else if (typeof v === 'object' && v !== null) {
    // An input item naming an item of a stored response.
    if ((v as Record<string, unknown>).type === 'item_reference') return 'item_reference';
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (REFERENCES.has(k) && x !== null && x !== '' && !(Array.isArray(x) && x.length === 0)) {
        // A code-interpreter `container` may be `{type: "auto"}`: a new one, no reference.
        if (!(k === 'container' && typeof x === 'object' && !Array.isArray(x))) return k;
      }
      const f = findReference(x);
      if (f !== null) return f;
    }
  }
  return null;
}
