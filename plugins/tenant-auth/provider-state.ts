/**
 * Objects the provider keeps (issue 21 part 2): stored responses and chat completions, files,
 * uploads, batches, vector stores, assistants, threads, fine-tuning jobs, conversations. The
 * provider keeps them under the provider key, not under our tenant: with one key shared by
 * several tenants, whoever holds an object's id (or lists them) reads it, continues it
 * (`previous_response_id`) or deletes it. The gateway does not record which tenant created
 * which object, so it does not let a tenant on a shared key create, reach or reference one:
 *
 * - `store` (top level, per plan, per tenant): `auto` (the default) is on for a tenant whose
 *   provider key is its own (`upstream_auth.tenants`), off for one on a plan key, the default
 *   key or the service's; `on` is the operator vouching that the key is the tenant's alone (a
 *   provider project per tenant behind a plan key, say); `off` is never.
 * - Store off: the stateful APIs are refused (403 `stored_objects_disabled`) even where
 *   `api_surface` lists them; a Responses request is sent with `store: false` (the provider's
 *   default is true: the response would be kept where no one may read it back), and in it an
 *   explicit `store: true` and every reference to a stored object (`previous_response_id`,
 *   `conversation`, `file_id`, `file_ids`, `vector_store_ids`, a `container` id) are refused
 *   (400 `stored_objects_disabled`, `param` naming the field), wherever they sit in the body.
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

  /** Whether the provider may keep objects for this tenant. */
  storeOn(plan: string, tenant: string): boolean {
    const own = (o: Record<string, { store?: StoreMode | null }>, k: string) =>
      Object.prototype.hasOwnProperty.call(o, k) ? (o[k]?.store ?? null) : null;
    const mode = own(this.cfg.tenants, tenant) ?? own(this.cfg.plans, plan) ?? this.cfg.store;
    return mode === 'on' || (mode === 'auto' && this.ownKey(tenant));
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
