/**
 * Which PDK calls `kta_pdk.run` may carry (batch.ts says when and why): the reads of access and
 * of the log timer, the writes that only change the request, the exits; and how the snippet's
 * results decode into what the same call alone would have answered.
 */
import { SHARED_KEYS } from '../request/shared-keys';

/** The snippet's entry in `kong.ctx.shared` (lib/pluginserver/pdk-batch.lua). */
export const BATCH_METHOD = `kong.ctx.shared.${SHARED_KEYS.pdkBatch.key}.run`;
/** The snippet's merge of the chain's access phases (lib/pluginserver/chain-access.ts). */
export const CHAIN_METHOD = `kong.ctx.shared.${SHARED_KEYS.pdkBatch.key}.chain`;
/** Undoes CHAIN_METHOD for the request (the owner could not run what it merged). */
export const UNCHAIN_METHOD = `kong.ctx.shared.${SHARED_KEYS.pdkBatch.key}.unchain`;

export const ACCESS_READ =
  /^kong\.(request\.get_|client\.get_(consumer|credential|ip|forwarded_ip)$|router\.get_(route|service)$|nginx\.get_var$|ctx\.shared\.get$)/;
/**
 * Reads no write of WRITES can change (the route and service Kong matched, the authenticated
 * consumer and credential, the client address, the request's id): learnt and answered from
 * the phase's first fetch even after the phase wrote.
 */
const STABLE_READ =
  /^kong\.(router\.get_(route|service)|client\.get_(consumer|credential|ip|forwarded_ip))$/;
const STABLE_VARS: ReadonlySet<unknown> = new Set(['kong_request_id']);

export function isStableRead(method: string, args: readonly unknown[]): boolean {
  return STABLE_READ.test(method) || (method === 'kong.nginx.get_var' && STABLE_VARS.has(args[0]));
}

/** In the log timer: what the snippet reads as Kong's saved copy would (see above). */
const LOG_READ =
  /^kong\.(ctx\.shared\.get|service\.response\.get_(status|headers|header|raw_body)|response\.get_(status|headers|source))$/;
export const LOG_WRITES = new Set(['kong.ctx.shared.set']);

export const READS: Record<string, RegExp> = {
  access: ACCESS_READ,
  rewrite: ACCESS_READ,
  log: LOG_READ,
};

export const WRITES = new Set([
  'kong.service.request.set_header',
  'kong.service.request.set_headers',
  'kong.service.request.add_header',
  'kong.service.request.clear_header',
  'kong.service.request.set_raw_body',
  'kong.service.request.set_path',
  'kong.service.request.set_raw_query',
  'kong.service.request.set_method',
  'kong.service.request.enable_buffering',
  'kong.service.set_target',
  'kong.service.set_upstream',
  'kong.response.set_header',
  'kong.response.set_headers',
  'kong.response.add_header',
  'kong.response.clear_header',
  'kong.ctx.shared.set',
  'kong.log.set_serialize_value',
  'kong.log.debug',
  'kong.log.info',
  'kong.log.notice',
  'kong.log.warn',
  'kong.log.err',
]);

/** Calls after which Kong never steps the event again (pdk.js NON_RETURN_METHODS). */
export const EXITS = new Set(['kong.response.exit', 'kong.response.error']);

/**
 * Whether a PDK call hands Kong an exit (Kong yields the request's coroutine for good and never
 * steps the event again): the exit itself, or a batch that ends with one.
 */
export function endsWithExit(method: unknown, args: unknown): boolean {
  if (typeof method !== 'string') return false;
  if (EXITS.has(method)) return true;
  if (method !== BATCH_METHOD || !Array.isArray(args)) return false;
  const calls: unknown = args[0];
  if (!Array.isArray(calls) || calls.length === 0) return false;
  const last: unknown = calls[calls.length - 1];
  return Array.isArray(last) && typeof last[0] === 'string' && EXITS.has(last[0]);
}

/** kong.request.get_headers & co. as mp_rpc.lua's fix_mmap sends them alone. */
const MULTIMAP = new Set([
  'kong.request.get_query',
  'kong.request.get_headers',
  'kong.response.get_headers',
  'kong.service.response.get_headers',
]);

/**
 * A read fetched ahead that Kong could not make (`e`), or a saved log value the snippet does not
 * have (`x`): the call is then made alone, if at all.
 */
export function isFailure(item: unknown): boolean {
  return typeof item === 'object' && item !== null && ('e' in item || 'x' in item);
}

/** One result of `kta_pdk.run`, as the same call alone would have answered it. */
export function decodeResult(method: string, item: unknown): unknown {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return null;
  const r = item as { v?: unknown; b?: unknown };
  if (typeof r.b === 'string') return Buffer.from(r.b, 'base64');
  const v = r.v ?? null;
  if (v !== null && MULTIMAP.has(method)) return fixMultimap(v);
  return v;
}

function fixMultimap(v: unknown): unknown {
  if (Array.isArray(v)) return {}; // an empty Lua table
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = x === true ? [] : typeof x === 'string' ? [x] : x;
  }
  return out;
}
