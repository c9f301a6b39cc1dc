/**
 * Every `kong.ctx.shared` key of the chain, declared once: its name, who writes it, who reads
 * it, and the version its value carries. `kong.ctx.shared` is the request's own table in nginx
 * (clients cannot write there); it is how plugins in different processes, and kong.yml's Lua
 * snippets, hand facts on. Each key's codec (its guard: a decoder that answers undefined, null
 * or a refusal for anything that is not its value) lives beside the code that owns the fact
 * and takes the key's name from here; this module imports nothing.
 *
 * Kept true by test/unit/shared-keys.test.ts: every key the code and the snippets use is here,
 * each guard refuses what is not its value and checks the version declared here, and
 * docs/architecture.md's table "kong.ctx.shared, key by key" says the same.
 */

export interface SharedKey {
  readonly key: string;
  /** Plugins, or the kong.yml snippet (`pre-function`, `post-function`), that write it. */
  readonly writers: readonly string[];
  /** Plugins or snippets that read it. */
  readonly readers: readonly string[];
  /** The version the encoded value carries; null for a bare value its guard checks whole. */
  readonly version: number | null;
  readonly what: string;
}

const PRE = 'pre-function';
const POST = 'post-function';

export const SHARED_KEYS = {
  tenantContext: {
    key: 'tenant_context',
    writers: ['tenant-auth'],
    readers: [
      'tenant-ratelimit',
      'tenant-cache',
      'token-meter',
      'retrieval-injector',
      'circuit-breaker',
      POST,
    ],
    version: 2,
    what: 'the TenantContext (frozen, re-validated on read) and the request scope key',
  },
  tokenEstimate: {
    key: 'token_estimate',
    writers: ['tenant-ratelimit', 'token-meter'],
    readers: ['tenant-ratelimit', 'token-meter'],
    version: 1,
    what: 'the token estimate of the request, made once (one process per plugin only)',
  },
  ratelimitRecord: {
    key: 'tenant_ratelimit',
    writers: ['tenant-ratelimit'],
    readers: ['tenant-ratelimit'],
    version: 1,
    what: 'what tenant-ratelimit admitted, for its log phase (when the scope is not found)',
  },
  cacheStatus: {
    key: 'tenant_cache_status',
    writers: ['tenant-cache'],
    readers: ['token-meter', PRE],
    version: null,
    what: 'HIT / MISS / BYPASS: a hit is billed 0 upstream tokens',
  },
  cachePending: {
    key: 'tenant_cache_pending',
    writers: ['tenant-cache'],
    readers: ['tenant-cache'],
    version: 1,
    what: 'the miss tenant-cache stores in its log phase (when the scope is not found)',
  },
  meterState: {
    key: 'token_meter',
    writers: ['token-meter'],
    readers: ['token-meter', POST],
    version: 1,
    what: 'the budget reservation token-meter settles in its log phase (`none` for a POST that spends no tokens: a file upload, a cancel; `{"batch":…}` for a batch, its input file or a read of it)',
  },
  usage: {
    key: 'llm_usage',
    writers: [POST],
    readers: ['token-meter', 'tenant-ratelimit'],
    version: 1,
    what: 'the usage the upstream reported, read from the response as it streams',
  },
  transformUsage: {
    key: 'kta_transform_usage',
    writers: [POST],
    readers: ['token-meter'],
    version: 1,
    what: 'the usage of ai-request-transformer’s own LLM call (Kong’s count), billed to the tenant as a ledger line of its own',
  },
  captureFlag: {
    key: 'kta_capture',
    writers: ['tenant-auth'],
    readers: ['token-meter', POST],
    version: null,
    what: 'an opted-in tenant’s request to capture (a draft, without the key)',
  },
  captureAnswer: {
    key: 'kta_capture_answer',
    writers: [POST],
    readers: ['token-meter', 'tenant-auth'],
    version: null,
    what: 'the answer of a captured request, or of one that made a stored object, as the client received it (`all;` or `cut;`)',
  },
  objectCapture: {
    key: 'kta_objects',
    writers: ['tenant-auth', 'token-meter'],
    readers: [POST],
    version: null,
    what: 'a request whose answer makes or changes a stored object (`store: scoped`), or a batch or batch input file token-meter meters: its answer is kept',
  },
  cacheCapture: {
    key: 'kta_cache_capture',
    writers: ['tenant-cache'],
    readers: [POST],
    version: null,
    what: 'a cacheable miss: keep its answer for the store, up to this many bytes (`max_entry_bytes`)',
  },
  cacheAnswer: {
    key: 'kta_cache_answer',
    writers: [POST],
    readers: ['tenant-cache'],
    version: null,
    what: 'the answer of a cacheable miss as the upstream sent it, for the store (`all;`, `b64;` or `cut;`)',
  },
  logFacts: {
    key: 'kta_log_facts',
    writers: [PRE],
    readers: ['token-meter', 'circuit-breaker'],
    version: null,
    what: 'the response’s status, headers and source, saved for the log timer',
  },
  logSaved: {
    key: 'kta_log',
    writers: [PRE],
    readers: [PRE],
    version: null,
    what: 'Kong’s saved status, response headers and source, which `kta_pdk.run` answers from in log',
  },
  pdkBatch: {
    key: 'kta_pdk',
    writers: [PRE],
    readers: ['every plugin of ours'],
    version: null,
    what: 'the PDK batch entry (`kta_pdk.run`): many PDK calls in one exchange',
  },
  mergedSpans: {
    key: 'kta_merged_spans',
    writers: ['tenant-auth'],
    readers: [PRE],
    version: null,
    what: 'the access times of the plugins run inside tenant-auth’s (`<plugin>:<start µs>:<end µs>;…`), made spans of the request’s trace',
  },
} as const satisfies Record<string, SharedKey>;

/**
 * The first step of every versioned key's guard: the JSON object a value holds, or undefined
 * for anything else (not a string, empty, not JSON, not an object). The guard then checks the
 * version and the fields.
 */
export function sharedJsonObject(raw: unknown): Record<string, unknown> | undefined {
  if (typeof raw !== 'string' || raw === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
    ? (parsed as Record<string, unknown>)
    : undefined;
}
