// Kong's bundled `post-function` (priority -1000, access and body_filter phases) and
// `pre-function` (priority 1000000, access phase; kong/plugins/pre-function/handler.lua), running the same Lua
// text in a real Lua VM (wasmoon, Lua 5.4) with the sandbox Kong gives it.
//
// Mirrors kong/plugins/pre-function/_handler.lua (3.9.3): each string of a phase array is
// loaded in the sandbox (kong/tools/sandbox.lua + kong-lua-sandbox.lua: the BASE_ENV
// whitelist plus `kong` and `ngx`); its first run may return a function (the 0.2.0+ style),
// which then replaces it for every later call. kong/plugins/post-function/handler.lua gives
// the priority. body_filter runs once per body chunk with ngx.arg[1] = chunk and
// ngx.arg[2] = eof, and once more with eof = true at the end (nginx's last buffer).
//
// What the harness offers the snippet: ngx.arg, ngx.ctx (per request), kong.ctx.shared (the
// request's shared table, read and written through), kong.log.set_serialize_value and
// kong.log.{err,warn,notice,info,debug}. Not mirrored: changing ngx.arg[1] (the body is passed
// through as the upstream sent it). Chunks reach Lua as their bytes: plain ASCII as a string,
// anything else (NUL, UTF-8, a binary event stream) hex-encoded and decoded by the prelude.
//
// pre-function access offers the PDK calls of the request the snippet needs, answered by the
// harness's own PDK (harness/pdk/*.ts, each mirroring its Kong 3.9.3 file): kong.request.get_header
// and get_headers (kong/pdk/request.lua; get_headers is ngx.req.get_headers: lower-case names,
// a repeated header as an array, looked up case-insensitively with `_` for `-`),
// kong.service.request.set_header / clear_header (kong/pdk/service/request.lua: ngx.req.set_header,
// so key-auth after it reads the new value) and kong.response.exit (kong/pdk/response.lua: in
// access the response is delayed and the handler's coroutine yields for good, so nothing after
// it runs; a table body is sent as JSON, application/json; charset=utf-8), plus ngx.null. A Lua
// error (or a PDK call refusing its arguments) is a 500 "An unexpected error occurred"
// (kong/init.lua execute_collecting_plugins_iterator).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LuaFactory, type LuaEngine } from 'wasmoon';
import type { FieldList } from './config/schema';
import { ExitSignal, KongLuaError, type PdkEnv } from './pdk/core';
import { requestPdk } from './pdk/request';
import { responsePdk } from './pdk/response';
import { servicePdk } from './pdk/service';
import type { LoadedPlugin } from './plugins';
import type { RequestState } from './request-state';

export const POST_FUNCTION_PRIORITY = -1000;
export const PRE_FUNCTION_PRIORITY = 1000000;

const phaseField = {
  type: 'array',
  required: true,
  default: [],
  elements: { type: 'string', required: false },
} as const;

/** kong/plugins/pre-function/_schema.lua (3.9.3), the config record. */
export const postFunctionConfigFields: FieldList = [
  { certificate: { ...phaseField, elements: { ...phaseField.elements } } },
  { rewrite: { ...phaseField, elements: { ...phaseField.elements } } },
  { access: { ...phaseField, elements: { ...phaseField.elements } } },
  { header_filter: { ...phaseField, elements: { ...phaseField.elements } } },
  { body_filter: { ...phaseField, elements: { ...phaseField.elements } } },
  { log: { ...phaseField, elements: { ...phaseField.elements } } },
];

export const postFunctionPlugin: LoadedPlugin = {
  name: 'post-function',
  priority: POST_FUNCTION_PRIORITY,
  phases: new Set(['access', 'body_filter']),
  noConsumer: true,
};

/** The same schema (kong/plugins/pre-function/_schema.lua is shared by both). */
export const preFunctionConfigFields = postFunctionConfigFields;

export const preFunctionPlugin: LoadedPlugin = {
  name: 'pre-function',
  priority: PRE_FUNCTION_PRIORITY,
  phases: new Set(['access']),
  noConsumer: true,
};

// The sandbox of kong/tools/kong-lua-sandbox.lua (BASE_ENV), built inside the VM; names
// absent in Lua 5.4 (unpack, math.pow, ...) are simply missing, as under a stricter Lua.
const PRELUDE = readFileSync(join(__dirname, 'post-function-prelude.lua'), 'utf8');

interface LuaHarness {
  compile(key: string, code: string): void;
  body_filter(
    key: string,
    rid: string,
    chunk: string,
    eof: boolean,
    hex: boolean,
  ): string | null | undefined;
  access(key: string, rid: string): string;
}

/** The PDK calls a pre-function snippet may make (answered by the harness's PDK). */
const ACCESS_PDK = new Set([
  'kong.request.get_header',
  'kong.request.get_headers',
  'kong.service.request.set_header',
  'kong.service.request.clear_header',
  'kong.response.exit',
]);

/** Lines "name\nvalue\n..." (what crosses into Lua) from {name: value | values}. */
function headerLines(headers: unknown): string {
  let out = '';
  for (const [k, v] of Object.entries((headers ?? {}) as Record<string, unknown>)) {
    for (const x of Array.isArray(v) ? v : [v]) out += `${k}\n${String(x)}\n`;
  }
  return out;
}

function linesToObject(lines: string): Record<string, string> {
  const parts = lines.split('\n');
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length; i += 2) out[parts[i] as string] = parts[i + 1] as string;
  return out;
}

/** One PDK call of a pre-function snippet, with Lua's arguments, on the current request. */
function accessPdk(name: string, args: unknown[]): unknown {
  const st = current;
  const env = currentEnv;
  if (!st || !env) return '\x01errno request';
  if (!ACCESS_PDK.has(name)) return `\x01errattempt to call a nil value (field '${name}')`;
  try {
    if (name === 'kong.request.get_headers')
      return headerLines(requestPdk[name]?.(st, [args[0] ?? undefined], env));
    if (name === 'kong.response.exit') {
      const [status, body, isTable, headers] = args;
      const b = isTable === true && typeof body === 'string' ? (JSON.parse(body) as unknown) : body;
      const h = typeof headers === 'string' ? linesToObject(headers) : undefined;
      responsePdk[name]?.(st, [status, b ?? undefined, h], env);
      return undefined;
    }
    const fn = requestPdk[name] ?? servicePdk[name];
    // nil crosses as undefined (wasmoon reads `.then` of a returned null).
    return (
      fn?.(
        st,
        args.map((a) => a ?? undefined),
        env,
      ) ?? undefined
    );
  } catch (e) {
    if (e instanceof ExitSignal) return '\x01exit';
    if (e instanceof KongLuaError) return `\x01err${e.message}`;
    throw e;
  }
}

let engine: Promise<{ lua: LuaEngine; h: LuaHarness }> | undefined;
/** The request whose chunk is being filtered: the Lua -> JS calls act on it. */
let current: RequestState | undefined;
/** The PDK environment of the pre-function access call running now. */
let currentEnv: PdkEnv | undefined;
const compiledKeys = new Set<string>();

function vm(): Promise<{ lua: LuaEngine; h: LuaHarness }> {
  engine ??= (async () => {
    const lua = await new LuaFactory().createEngine();
    lua.global.set('__js', {
      shared_get: (k: unknown) => {
        const v = current?.ctxShared.get(String(k));
        // nil crosses as undefined (wasmoon reads `.then` of a returned null).
        return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'
          ? v
          : undefined;
      },
      shared_set: (k: unknown, v: unknown) => {
        if (!current) return;
        if (v === null || v === undefined) current.ctxShared.delete(String(k));
        else current.ctxShared.set(String(k), v);
      },
      serialize: (k: unknown, v: unknown) => {
        current?.serializeValues.push({ key: String(k), value: plain(v), mode: 'set' });
      },
      log: (level: unknown, line: unknown) => {
        current?.stats.pdkErrors.push(`post-function ${String(level)}: ${String(line)}`);
      },
      pdk: (name: unknown, ...args: unknown[]) => accessPdk(String(name), args),
      // ngx.var.kong_request_id: Kong's request id (the X-Kong-Request-Id value).
      var: (name: unknown) => (String(name) === 'kong_request_id' ? current?.id : undefined),
      json_string: (v: unknown) => JSON.stringify(String(v)),
      // lua-cjson writes integers without a fraction and other numbers with 14 digits.
      json_number: (v: unknown) =>
        Number.isInteger(v) ? String(v) : String(Number((v as number).toPrecision(14))),
    });
    const h = (await lua.doString(PRELUDE)) as LuaHarness;
    return { lua, h };
  })();
  return engine;
}

/** A Lua table arrives as a JS object; keep plain data only. */
function plain(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v ?? null)) as unknown;
}

/** The body_filter Lua strings of a post-function config (undefined when it has none). */
export function bodyFilterCode(config: Record<string, unknown>): string[] | undefined {
  const list = config.body_filter;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  return list.filter((s): s is string => typeof s === 'string');
}

/** Runs one body_filter call of the post-function entity `key` for the request. */
export async function runBodyFilter(
  key: string,
  code: readonly string[],
  st: RequestState,
  chunk: Buffer,
  eof: boolean,
): Promise<void> {
  const { h } = await vm();
  if (!compiledKeys.has(key)) {
    compiledKeys.add(key);
    for (const c of code) h.compile(key, c);
  }
  current = st;
  try {
    // Plain ASCII goes as it is; anything else as hex, decoded by the prelude (see there).
    const ascii = chunk.every((b) => b > 0 && b < 0x80);
    const err = ascii
      ? h.body_filter(key, st.id, chunk.toString('latin1'), eof, false)
      : h.body_filter(key, st.id, chunk.toString('hex'), eof, true);
    if (typeof err === 'string') st.stats.pdkErrors.push(`post-function body_filter: ${err}`);
  } finally {
    current = undefined;
  }
}

/** The access Lua strings of a pre- or post-function config (undefined when it has none). */
export function accessCode(config: Record<string, unknown>): string[] | undefined {
  const list = config.access;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  return list.filter((s): s is string => typeof s === 'string');
}

/**
 * Runs the access phase of the pre- or post-function entity `key` for the request: 'ret',
 * 'exit' (kong.response.exit set st.exitResponse) or 'kong-error' (a Lua error: Kong answers
 * 500).
 */
export async function runAccess(
  key: string,
  code: readonly string[],
  st: RequestState,
  env: PdkEnv,
): Promise<'ret' | 'exit' | 'kong-error'> {
  const { h } = await vm();
  if (!compiledKeys.has(key)) {
    compiledKeys.add(key);
    for (const c of code) h.compile(key, c);
  }
  current = st;
  currentEnv = env;
  try {
    const r = h.access(key, st.id);
    if (r === 'ret' || r === 'exit') return r;
    st.stats.pdkErrors.push(`${env.pluginName} access: ${r}`);
    return 'kong-error';
  } finally {
    current = undefined;
    currentEnv = undefined;
  }
}
