/**
 * The one module that names Redis keys. Nothing else in the project builds a key string.
 *
 * Layout: `<namespace>:{t:<tenant>}:<what>[:<name>]` for tenant-local state and
 * `<namespace>:{q:<queue>}:<what>` for shared queues. The `{...}` is the Redis Cluster hash
 * tag: every key of one tenant lives in one slot, so a Lua script may touch several of them
 * and the same code runs unchanged on Redis Cluster. The namespace (default `kta`) lets
 * several deployments, or test runs, share one Redis without seeing each other's keys.
 *
 * Every variable part is validated: the tenant by its brand (only `parseTenantId` makes one),
 * the rest against a narrow pattern that excludes `{`, `}` and `:`, so no input can forge a
 * hash tag or reach into another tenant's keys.
 */
import type { TenantId } from '../tenant/tenant-id';

declare const redisKeyBrand: unique symbol;
/** A key built by this module; Lua-script helpers accept nothing else. */
export type RedisKey = string & { readonly [redisKeyBrand]: true };

export const DEFAULT_KEY_NAMESPACE = 'kta';

const NAMESPACE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** Names chosen by configuration: limit names, queue names, upstream names. */
const KEY_PART_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** A cache entry's name: a keyed digest (lowercase hex), never request text. */
const CACHE_DIGEST_PATTERN = /^[0-9a-f]{32,128}$/;

/** A SHA-256 hex digest. */
const DIGEST_PATTERN = /^[a-f0-9]{64}$/;
/**
 * An id the provider gave an object it keeps (`resp_…`, `file-…`, `batch_…`, `chatcmpl-…`): no
 * `{`, `}`, `:`, `%` or `/`, so no id can forge a hash tag or name another tenant's key.
 */
const PROVIDER_OBJECT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,191}$/;
/** Kong's request id (`kong_request_id`: hex), or any id of that alphabet; no `{`, `}`, `:`. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{7,127}$/;

/** Whether `id` can name a provider object's key (`Keyspace.providerObject`). */
export function isProviderObjectId(id: string): boolean {
  return PROVIDER_OBJECT_ID_PATTERN.test(id);
}

export class InvalidKeyPartError extends Error {
  override readonly name = 'InvalidKeyPartError';
}

function checkPart(value: string, what: string, pattern: RegExp): string {
  if (!pattern.test(value)) {
    throw new InvalidKeyPartError(`${what} ${JSON.stringify(value)} must match ${pattern.source}`);
  }
  return value;
}

export interface Keyspace {
  readonly namespace: string;
  /** Hash `{tokens, ts}`: one per-tenant token bucket (scripts/includes/bucket.lua). */
  rateBucket(tenant: TenantId, limit: string): RedisKey;
  /** Sorted set of lease id -> expiry ms: a tenant's in-flight requests (concurrency cap). */
  concurrencyLeases(tenant: TenantId): RedisKey;
  /**
   * Hash: a tenant's budget counters for one period (used/reserved tokens and cost, one
   * field per open reservation); see scripts/budget-reserve-4.lua.
   */
  budget(tenant: TenantId, period: string): RedisKey;
  /** Sorted set of request id -> expiry ms: the period's open budget reservations. */
  budgetReservations(tenant: TenantId, period: string): RedisKey;
  /**
   * Glob matching every tenant's open budget reservations, every period (token-meter's sweep
   * of expired reservations finds tenants no process of its own reserved for by SCAN).
   */
  budgetReservationsPattern(): string;
  /** The tenant and period of a key `budgetReservations` built, or null for any other key. */
  budgetReservationsOf(key: string): { tenant: string; period: string } | null;
  /** Set of request ids already settled in the period (settle exactly once). */
  budgetSettled(tenant: TenantId, period: string): RedisKey;
  /** Stream: the tenant's append-only usage ledger for one period (token-meter). */
  usageLedger(tenant: TenantId, period: string): RedisKey;
  /** Glob matching every tenant's usage ledger of one period (chargeback SCAN). */
  usageLedgerPattern(period: string): string;
  /**
   * Integer bumped on every change of the tenant's retrieval corpus (ingest, delete,
   * offboarding) by `retrieval-injector`'s knowledge operations; `tenant-cache` keys on it,
   * so a cached answer built from old knowledge is never served after a change.
   */
  knowledgeGeneration(tenant: TenantId): RedisKey;
  /**
   * String: one `tenant-cache` response entry, named by a per-tenant keyed digest of the
   * request (plugins/tenant-cache/cache-key.ts); the value is encrypted under the tenant's key.
   */
  cacheEntry(tenant: TenantId, digest: string): RedisKey;
  /**
   * String: the tenant's cache generation, a random nonce replaced by a purge. Entries record
   * the generation they were written under; one written under another is never served.
   */
  cacheGeneration(tenant: TenantId): RedisKey;
  /**
   * Sorted set of Milvus row id -> expiry ms: the tenant's semantic-cache rows
   * (plugins/tenant-cache/semantic/collection.ts), so each tenant's rows are bounded in number
   * and age (see the semantic cache's semantic-index-add-1.lua).
   */
  semanticIndex(tenant: TenantId): RedisKey;
  /**
   * String: one cached query embedding of the tenant (`retrieval-injector`), by the SHA-256
   * hex digest of model, dimension and text. Keyed by tenant so a cache hit can never hand
   * one tenant the trace of another's query.
   */
  embeddingCache(tenant: TenantId, digest: string): RedisKey;
  /**
   * String: one captured request of the tenant and its outcome, sealed under the tenant's key
   * (lib/capture/), by Kong's request id; it expires with the capture TTL.
   */
  capture(tenant: TenantId, requestId: string): RedisKey;
  /**
   * String `<tenant> <mac>`: which tenant request `requestId` belongs to, signed with the
   * capture secret (lib/capture/store.ts), so `npm run replay <id>` finds a capture without
   * being told the tenant. In the request id's own slot: one key per id, no hot slot.
   */
  captureOwner(requestId: string): RedisKey;
  /**
   * String (JSON `{s?}`: the object as last seen): one object the provider keeps for the
   * tenant (tenant-auth `store: scoped`), by its kind and the provider's id. Only the tenant's
   * own key says it owns the object; it expires with `stored_objects.ttl`.
   */
  providerObject(tenant: TenantId, kind: string, id: string): RedisKey;
  /** Sorted set id -> creation ms: the tenant's objects of one kind (what a list answers). */
  providerObjectIndex(tenant: TenantId, kind: string): RedisKey;
  /**
   * String (JSON): what token-meter read in a batch input file the tenant uploaded through a
   * metered route (its lines' model, endpoint and token bounds), by the provider's file id: a
   * batch is reserved from it at creation (plugins/token-meter/batch/).
   */
  batchInput(tenant: TenantId, fileId: string): RedisKey;
  /**
   * String (JSON): a batch token-meter reserved for and has not settled yet (its reservation's
   * request id and period, its price), by the provider's batch id.
   */
  batchOpen(tenant: TenantId, batchId: string): RedisKey;
  /** A shared queue across tenants (e.g. per upstream), in its own slot. */
  sharedQueue(queue: string): RedisKey;
  /**
   * The weighted fair queue of one shared upstream (tenant-ratelimit): every key in the
   * `{q:<upstream>}` slot, so one script schedules the whole cluster atomically.
   */
  fairQueue(upstream: string): FairQueueKeys;
  /** Glob matching every key of this namespace (for SCAN in tests and maintenance). */
  pattern(): string;
}

/** Keys of one upstream's fair queue (scripts/fair-queue-*-8.lua, in the order they take them). */
export interface FairQueueKeys {
  /** Sorted set ticket -> virtual finish tag: the waiting requests, in admission order. */
  readonly waiting: RedisKey;
  /** Sorted set ticket -> lease expiry ms: the upstream seats in use. */
  readonly seats: RedisKey;
  /** Hash ticket -> virtual start tag of a waiting ticket. */
  readonly starts: RedisKey;
  /** Sorted set ticket -> heartbeat expiry ms of a waiting ticket (a dead waiter expires). */
  readonly alive: RedisKey;
  /** Sorted set tenant -> virtual finish tag of its last request (per-tenant FIFO). */
  readonly tags: RedisKey;
  /** Hash {vtime, fvtime, tokens, ts}: virtual times and the upstream tokens-per-minute bucket. */
  readonly state: RedisKey;
  /** Sorted set ticket -> virtual finish tag: the waiting flex (non-urgent) requests. */
  readonly flexWaiting: RedisKey;
  /** Sorted set tenant -> virtual finish tag of its last flex request. */
  readonly flexTags: RedisKey;
  /** Pub/sub channel announcing granted tickets (not a key; same slot for sharded pub/sub). */
  readonly channel: string;
  /** In the order the fair-queue scripts take them. */
  readonly all: readonly RedisKey[];
}

export function createKeyspace(namespace: string = DEFAULT_KEY_NAMESPACE): Keyspace {
  const ns = checkPart(namespace, 'key namespace', NAMESPACE_PATTERN);
  // The namespace matches NAMESPACE_PATTERN: no character of it is special in a RegExp but '-'
  // outside a class, which is literal there.
  const budgetReservationsKey = new RegExp(`^${ns}:\\{t:([^{}:]+)\\}:budget-res:([^{}:]+)$`);
  const tenantKey = (tenant: TenantId, ...parts: string[]): RedisKey =>
    [ns, `{t:${tenant}}`, ...parts].join(':') as RedisKey;
  return {
    namespace: ns,
    rateBucket: (tenant, limit) =>
      tenantKey(tenant, 'rate', checkPart(limit, 'limit name', KEY_PART_PATTERN)),
    concurrencyLeases: (tenant) => tenantKey(tenant, 'leases'),
    budget: (tenant, period) =>
      tenantKey(tenant, 'budget', checkPart(period, 'budget period', KEY_PART_PATTERN)),
    budgetReservations: (tenant, period) =>
      tenantKey(tenant, 'budget-res', checkPart(period, 'budget period', KEY_PART_PATTERN)),
    budgetReservationsPattern: () => [ns, '{t:*}', 'budget-res', '*'].join(':'),
    budgetReservationsOf: (key) => {
      const m = budgetReservationsKey.exec(key);
      // The tenant is validated again by the caller (parseTenantId) before any use.
      return m?.[1] && m[2] && KEY_PART_PATTERN.test(m[2]) ? { tenant: m[1], period: m[2] } : null;
    },
    budgetSettled: (tenant, period) =>
      tenantKey(tenant, 'budget-settled', checkPart(period, 'budget period', KEY_PART_PATTERN)),
    usageLedger: (tenant, period) =>
      tenantKey(tenant, 'ledger', checkPart(period, 'ledger period', KEY_PART_PATTERN)),
    usageLedgerPattern: (period) =>
      [ns, '{t:*}', 'ledger', checkPart(period, 'ledger period', KEY_PART_PATTERN)].join(':'),
    knowledgeGeneration: (tenant) => tenantKey(tenant, 'knowledge', 'gen'),
    cacheEntry: (tenant, digest) =>
      tenantKey(tenant, 'cache', 'e', checkPart(digest, 'cache digest', CACHE_DIGEST_PATTERN)),
    cacheGeneration: (tenant) => tenantKey(tenant, 'cache', 'gen'),
    semanticIndex: (tenant) => tenantKey(tenant, 'cache', 's', 'index'),
    embeddingCache: (tenant, digest) =>
      tenantKey(tenant, 'emb', checkPart(digest, 'embedding digest', DIGEST_PATTERN)),
    capture: (tenant, requestId) =>
      tenantKey(tenant, 'capture', checkPart(requestId, 'request id', REQUEST_ID_PATTERN)),
    captureOwner: (requestId) =>
      [ns, `{c:${checkPart(requestId, 'request id', REQUEST_ID_PATTERN)}}`, 'capture-owner'].join(
        ':',
      ) as RedisKey,
    providerObject: (tenant, kind, id) =>
      tenantKey(
        tenant,
        'obj',
        checkPart(kind, 'object kind', KEY_PART_PATTERN),
        checkPart(id, 'provider object id', PROVIDER_OBJECT_ID_PATTERN),
      ),
    providerObjectIndex: (tenant, kind) =>
      tenantKey(tenant, 'objs', checkPart(kind, 'object kind', KEY_PART_PATTERN)),
    batchInput: (tenant, fileId) =>
      tenantKey(tenant, 'batch', 'in', checkPart(fileId, 'file id', PROVIDER_OBJECT_ID_PATTERN)),
    batchOpen: (tenant, batchId) =>
      tenantKey(
        tenant,
        'batch',
        'open',
        checkPart(batchId, 'batch id', PROVIDER_OBJECT_ID_PATTERN),
      ),
    sharedQueue: (queue) =>
      [ns, `{q:${checkPart(queue, 'queue name', KEY_PART_PATTERN)}}`, 'queue'].join(
        ':',
      ) as RedisKey,
    fairQueue: (upstream) => {
      const base = `${ns}:{q:${checkPart(upstream, 'upstream name', KEY_PART_PATTERN)}}`;
      const k = (what: string): RedisKey => `${base}:${what}` as RedisKey;
      const keys = {
        waiting: k('waiting'),
        seats: k('seats'),
        starts: k('starts'),
        alive: k('alive'),
        tags: k('tags'),
        state: k('state'),
        flexWaiting: k('flex-waiting'),
        flexTags: k('flex-tags'),
      };
      return {
        ...keys,
        channel: `${base}:granted`,
        all: [
          keys.waiting,
          keys.seats,
          keys.starts,
          keys.alive,
          keys.tags,
          keys.state,
          keys.flexWaiting,
          keys.flexTags,
        ],
      };
    },
    pattern: () => `${ns}:*`,
  };
}
