/**
 * Which tenant owns each object the provider keeps (issue 21 part 2, tenant-auth
 * `store: scoped`): stored responses, stored chat completions, files, batches, uploads, vector
 * stores and conversations, recorded
 * under the tenant when the provider made them, so that on a provider key several tenants
 * share each reaches only its own.
 *
 * Security by construction: every call takes the request's TenantContext and names the key
 * from its tenant id (lib/redis/keys.ts `providerObject`); there is no call that takes a bare
 * id, so no code path can ask "who owns this id" and answer for another tenant. An object of
 * tenant A is simply absent from tenant B's keys: B's lookup, list or delete finds nothing,
 * the same answer as for an id that never existed.
 *
 * Nothing is held forever: each record and each index expires with the TTL (an object the
 * provider still keeps past it is then unreachable through the gateway: closed, not open),
 * and each index keeps at most `maxPerKind` ids.
 */
import { join } from 'node:path';
import { withDeadline, type RedisClient } from '../redis/client';
import { isProviderObjectId, type Keyspace } from '../redis/keys';
import { loadScript, runScript } from '../redis/lua-script';
import type { TenantContext } from '../tenant/context';

const SCRIPTS = join(__dirname, 'scripts');

/** The kinds of object the registry scopes (each its own key space: an id is owned per kind). */
export const OBJECT_KINDS = [
  'response',
  'chat_completion',
  'file',
  'batch',
  'upload',
  'vector_store',
  'conversation',
] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

/** The most ids one tenant's index of one kind keeps (a list shows the newest). */
export const MAX_PER_KIND = 10_000;
/**
 * The largest object kept as seen (a list answers it); tenant-auth keeps a summary of larger
 * ones (object-refs.ts `snapshotOf`), and an object without either is listed by id only.
 */
export const MAX_SNAPSHOT_BYTES = 16 * 1024;

export interface OwnedObject {
  readonly id: string;
  /** The object as the provider last answered it through the gateway (JSON), or null. */
  readonly snapshot: Record<string, unknown> | null;
}

export interface ListPage {
  readonly items: readonly OwnedObject[];
  readonly hasMore: boolean;
}

export interface ListOptions {
  /** 1..100. */
  readonly limit: number;
  /** Newest first (`desc`, OpenAI's default) or oldest first. */
  readonly order: 'asc' | 'desc';
  /** The page starts after this id (OpenAI's cursor); an id not in the list gives an empty page. */
  readonly after: string | null;
}

interface Stored {
  /** The object as last seen (a JSON string), when it was small enough to keep. */
  s?: string;
}

export class ObjectRegistry {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keyspace,
    private readonly ttlMs: number,
    private readonly maxPerKind: number = MAX_PER_KIND,
  ) {}

  /** True when the tenant owns `id` of `kind`. An id no key can hold is owned by no one. */
  async owns(ctx: TenantContext, kind: ObjectKind, id: string): Promise<boolean> {
    if (!isProviderObjectId(id)) return false;
    const key = this.keys.providerObject(ctx.tenantId, kind, id);
    return (await withDeadline(this.redis, this.redis.exists(key))) === 1;
  }

  /**
   * Records `id` as the tenant's (or refreshes what it last was). Returns true when it was
   * new. An id no key can hold is not recorded (false): the tenant cannot reach it here.
   */
  async record(
    ctx: TenantContext,
    kind: ObjectKind,
    id: string,
    snapshot: string | null,
    now: number = Date.now(),
  ): Promise<boolean> {
    if (!isProviderObjectId(id)) return false;
    const value: Stored =
      snapshot !== null && Buffer.byteLength(snapshot) <= MAX_SNAPSHOT_BYTES ? { s: snapshot } : {};
    const reply = await runScript(
      this.redis,
      loadScript('provider-object-record-2', SCRIPTS),
      [
        this.keys.providerObject(ctx.tenantId, kind, id),
        this.keys.providerObjectIndex(ctx.tenantId, kind),
      ],
      [JSON.stringify(value), this.ttlMs, now, id, this.maxPerKind],
    );
    return reply === 1;
  }

  /** Forgets `id` (the provider deleted it). Only the tenant's own record can be removed. */
  async forget(ctx: TenantContext, kind: ObjectKind, id: string): Promise<void> {
    if (!isProviderObjectId(id)) return;
    const key = this.keys.providerObject(ctx.tenantId, kind, id);
    const index = this.keys.providerObjectIndex(ctx.tenantId, kind);
    await withDeadline(this.redis, this.redis.del(key));
    await withDeadline(this.redis, this.redis.zRem(index, id));
  }

  /** One page of the tenant's own objects of `kind`, in creation order. */
  async list(ctx: TenantContext, kind: ObjectKind, opts: ListOptions): Promise<ListPage> {
    const index = this.keys.providerObjectIndex(ctx.tenantId, kind);
    const all = await withDeadline(
      this.redis,
      this.redis.zRange(index, 0, -1, opts.order === 'desc' ? { REV: true } : undefined),
    );
    let start = 0;
    if (opts.after !== null) {
      const at = all.indexOf(opts.after);
      if (at < 0) return { items: [], hasMore: false };
      start = at + 1;
    }
    const items: OwnedObject[] = [];
    const gone: string[] = [];
    // Ids whose record expired or was deleted are skipped (and dropped from the index).
    for (let i = start; i < all.length && items.length <= opts.limit;) {
      const batch = all.slice(i, i + opts.limit + 1 - items.length);
      i += batch.length;
      const values = await Promise.all(
        batch.map((id) =>
          withDeadline(
            this.redis,
            this.redis.get(this.keys.providerObject(ctx.tenantId, kind, id)),
          ).then((v) => [id, v] as const),
        ),
      );
      for (const [id, v] of values) {
        if (typeof v !== 'string') gone.push(id);
        else items.push({ id, snapshot: snapshotOf(v) });
      }
    }
    if (gone.length > 0) await withDeadline(this.redis, this.redis.zRem(index, gone));
    return { items: items.slice(0, opts.limit), hasMore: items.length > opts.limit };
  }
}

function snapshotOf(value: string): Record<string, unknown> | null {
  try {
    const stored = JSON.parse(value) as Stored;
    if (typeof stored.s !== 'string') return null;
    const obj = JSON.parse(stored.s) as unknown;
    return obj !== null && typeof obj === 'object' && !Array.isArray(obj)
      ? (obj as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}
