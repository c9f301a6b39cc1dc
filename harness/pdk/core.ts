// Shared pieces of the PDK emulation: how a PDK call can end, phase checks, Lua value semantics.
import type { DeclarativeConfig } from '../config/entities';
import type { KongPhase, RequestState } from '../request-state';

/** A Lua error raised inside Kong's PDK (the plugin's promise then never settles, as in Kong). */
export class KongLuaError extends Error {}
/** kong.response.exit / error: the handler coroutine is abandoned (yield / ngx.exit). */
export class ExitSignal extends Error {}
/** A PDK method the harness does not implement: answered with StepError, never a hang. */
export class NotImplementedError extends Error {}

export interface PdkEnv {
  pluginName: string;
  phase: KongPhase;
  config: DeclarativeConfig;
  nodeId: string;
  log: (line: string) => void;
}

export type PdkFn = (st: RequestState, args: unknown[], env: PdkEnv) => unknown;

// kong/pdk/private/phases.lua (3.9.3) check_phase message.
export function checkPhase(
  st: RequestState,
  allowed: readonly KongPhase[] | readonly string[],
): void {
  if ((allowed as readonly string[]).includes(st.phase)) return;
  throw new KongLuaError(
    `function cannot be called in ${st.phase} phase (only in: ${allowed.join(', ')})`,
  );
}

/** ngx.req.* / ngx.var inside the log timer of plugin.lua: no request object there. */
export function requireRequestContext(st: RequestState): void {
  if (st.inLogTimer) throw new KongLuaError('API disabled in the context of ngx.timer');
}

export const REWRITE_ACCESS_HEADER = [
  'rewrite',
  'access',
  'response',
  'balancer',
  'header_filter',
  'error',
  'admin_api',
] as const;
export const HEADER_BODY_LOG = [
  'response',
  'header_filter',
  'body_filter',
  'log',
  'error',
  'admin_api',
] as const;
export const REQUEST_PHASES = [
  'rewrite',
  'access',
  'balancer',
  'response',
  'header_filter',
  'body_filter',
  'log',
  'error',
  'admin_api',
] as const;
/**
 * The max_headers argument of kong.request.get_headers, kong.response.get_headers and
 * kong.service.response.get_headers (kong/pdk/request.lua, kong/pdk/response.lua,
 * kong/pdk/service/response.lua 3.9.3: MIN_HEADERS 1, MAX_HEADERS 1000); nil means the
 * ngx.req/ngx.resp.get_headers default of 100 header lines.
 */
export function maxHeadersArg(max: unknown): number {
  if (max === null || max === undefined) return 100;
  if (typeof max !== 'number') throw new KongLuaError('max_headers must be a number');
  if (max < 1) throw new KongLuaError('max_headers must be >= 1');
  if (max > 1000) throw new KongLuaError('max_headers must be <= 1000');
  return max;
}

/**
 * kong/pdk/private/checks.lua (3.9.3) normalize_multi_header: an empty string header value
 * (alone or inside a value array) is sent as a single space; numbers/booleans via tostring.
 * kong.service.request.set_header/add_header/set_headers and kong.response.set_header/
 * add_header/set_headers/exit all pass their values through it.
 */
export function normalizeHeaderValues(values: string[]): string[] {
  return values.map((v) => (v === '' ? ' ' : v));
}

export const BEFORE_CONTENT = ['rewrite', 'access', 'response', 'admin_api'] as const;
export const ACCESS_REWRITE_BALANCER = ['rewrite', 'access', 'balancer'] as const;

/**
 * A value as it comes back after a trip through Lua and lua-MessagePack (mp_rpc.lua): binary
 * becomes a string, tables with keys 1..n become arrays, other tables maps, an empty table an
 * empty array, nil (null) entries vanish.
 */
export function throughLua(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (const item of v) {
      if (item === null || item === undefined) break; // a hole ends a Lua sequence
      out.push(throughLua(item));
    }
    return out;
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(
      ([, x]) => x !== null && x !== undefined,
    );
    if (entries.length === 0) return [];
    const out: Record<string, unknown> = {};
    for (const [k, x] of entries) out[k] = throughLua(x);
    return out;
  }
  return v;
}

/** A Lua string argument (binary and text both are Lua strings). */
export function luaString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('latin1');
  return undefined;
}

export function bufferOf(v: unknown): Buffer | undefined {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v);
  return undefined;
}

export function luaType(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'object') return v instanceof Uint8Array ? 'string' : 'table';
  return typeof v;
}
