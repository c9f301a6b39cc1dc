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
// through as the upstream sent it); chunks reach Lua decoded as latin1 (bytes kept 1:1 as
// characters, so ASCII patterns match as they would on the bytes).
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
const PRELUDE = `
local ids = [[
_VERSION assert error ipairs next pairs pcall select tonumber tostring type unpack xpcall
coroutine.create coroutine.resume coroutine.running coroutine.status coroutine.wrap coroutine.yield
math.abs math.acos math.asin math.atan math.atan2 math.ceil math.cos math.cosh math.deg math.exp
math.fmod math.floor math.frexp math.huge math.ldexp math.log math.log10 math.max math.min math.modf
math.pi math.pow math.rad math.random math.sin math.sinh math.sqrt math.tan math.tanh
os.clock os.date os.difftime os.time
string.byte string.char string.find string.format string.gmatch string.gsub string.len
string.lower string.match string.rep string.reverse string.sub string.upper
table.concat table.insert table.maxn table.remove table.sort
]]
local G = _G
local function base_env()
  local env = {}
  for id in string.gmatch(ids, '%S+') do
    local m, f = string.match(id, '([^%.]+)%.([^%.]+)')
    if m then
      env[m] = env[m] or {}
      env[m][f] = G[m] and G[m][f]
    else
      env[id] = G[id]
    end
  end
  return env
end
local js = __js
local CUR = nil
local NULL = setmetatable({}, { __tostring = function() return 'null' end })
local EXIT = {}
local ngx_proxy = setmetatable({}, { __index = function(_, k)
  if k == 'arg' then return CUR.arg end
  if k == 'ctx' then return CUR.ctx end
  if k == 'null' then return NULL end
  -- ngx.var: the variables the snippets read (kong_request_id), else nil as for an unset one.
  if k == 'var' then return setmetatable({}, { __index = function(_, name) return js.var(name) end }) end
  return nil
end })
local shared = setmetatable({}, {
  __index = function(_, k) return js.shared_get(k) end,
  __newindex = function(_, k, v) js.shared_set(k, v) end,
})
local log = { set_serialize_value = function(k, v) js.serialize(k, v) end }
for _, lvl in ipairs({ 'err', 'warn', 'notice', 'info', 'debug' }) do
  log[lvl] = function(...) js.log(lvl, table.concat({ ... }, ' ')) end
end
-- JSON of a Lua value as lua-cjson encodes it (a table with keys 1..n is an array, {} an object).
local function json(v)
  if v == nil or v == NULL then return 'null' end
  local t = type(v)
  if t == 'boolean' then return tostring(v) end
  if t == 'number' then return js.json_number(v) end
  if t == 'string' then return js.json_string(v) end
  if t ~= 'table' then error('Cannot serialise ' .. t .. ': type not supported') end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n > 0 and n == #v then
    local out = {}
    for i = 1, n do out[i] = json(v[i]) end
    return '[' .. table.concat(out, ',') .. ']'
  end
  local out = {}
  for k, x in pairs(v) do out[#out + 1] = js.json_string(tostring(k)) .. ':' .. json(x) end
  return '{' .. table.concat(out, ',') .. '}'
end
-- A JS answer to a PDK call: { ok } or an error raised in the caller, or the exit signal.
local function pdk(name, ...)
  local r = js.pdk(name, ...)
  if r == '\\1exit' then error(EXIT) end
  if type(r) == 'string' and string.sub(r, 1, 4) == '\\1err' then error(string.sub(r, 5), 3) end
  return r
end
local header_mt = { __index = function(t, k)
  if type(k) ~= 'string' then return nil end
  local n = string.gsub(string.lower(k), '_', '-')
  return rawget(t, n)
end }
-- Headers cross as lines (name, value, name, value, ...): no header line holds a newline.
local function headers_table(lines)
  local t, name = {}, nil
  for line in string.gmatch(lines, '([^\\n]*)\\n') do
    if name == nil then
      name = line
    else
      local cur = t[name]
      if cur == nil then t[name] = line
      elseif type(cur) == 'table' then cur[#cur + 1] = line
      else t[name] = { cur, line } end
      name = nil
    end
  end
  return setmetatable(t, header_mt)
end
local request = {
  get_header = function(name) return pdk('kong.request.get_header', name) end,
  get_headers = function(max) return headers_table(pdk('kong.request.get_headers', max)) end,
}
local service = { request = {
  set_header = function(name, value) return pdk('kong.service.request.set_header', name, value) end,
  clear_header = function(name) return pdk('kong.service.request.clear_header', name) end,
} }
local response = {
  exit = function(status, body, headers)
    local b = nil
    if type(body) == 'table' then b = json(body) elseif body ~= nil then b = body end
    local hs = nil
    if headers ~= nil then
      hs = ''
      for k, v in pairs(headers) do hs = hs .. tostring(k) .. '\\n' .. tostring(v) .. '\\n' end
    end
    return pdk('kong.response.exit', status, b, type(body) == 'table', hs)
  end,
}
local kong_proxy = { ctx = { shared = shared }, log = log, request = request, service = service,
  response = response }
local compiled, requests = {}, {}
local H = {}
function H.compile(key, code)
  local env = base_env()
  env.ngx, env.kong = ngx_proxy, kong_proxy
  local f, err = load(code, '=post-function', 't', env)
  if not f then error(err) end
  compiled[key] = compiled[key] or {}
  table.insert(compiled[key], { fn = f, first = true })
end
function H.body_filter(key, rid, chunk, eof)
  local r = requests[rid]
  if not r then r = { ctx = {} }; requests[rid] = r end
  r.arg = { chunk, eof }
  CUR = r
  local ok, err = pcall(function()
    for _, c in ipairs(compiled[key] or {}) do
      if c.first then
        c.first = false
        local res = c.fn()
        if type(res) == 'function' then c.fn = res; res() end
      else
        c.fn()
      end
    end
  end)
  CUR = nil
  if eof then requests[rid] = nil end
  if not ok then return tostring(err) end
  return nil
end
-- One access call (pre-function): 'ret', 'exit', or the Lua error's text.
function H.access(key, rid)
  local r = requests[rid]
  if not r then r = { ctx = {} }; requests[rid] = r end
  CUR = r
  local ok, err = pcall(function()
    for _, c in ipairs(compiled[key] or {}) do
      if c.first then
        c.first = false
        local res = c.fn()
        if type(res) == 'function' then c.fn = res; res() end
      else
        c.fn()
      end
    end
  end)
  CUR = nil
  requests[rid] = nil
  if ok then return 'ret' end
  if err == EXIT then return 'exit' end
  return tostring(err)
end
return H
`;

interface LuaHarness {
  compile(key: string, code: string): void;
  body_filter(key: string, rid: string, chunk: string, eof: boolean): string | null | undefined;
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
    const err = h.body_filter(key, st.id, chunk.toString('latin1'), eof);
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
