// Kong's bundled `post-function` (priority -1000), body_filter phase only, running the same
// Lua text in a real Lua VM (wasmoon, Lua 5.4) with the sandbox Kong gives it.
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
import { LuaFactory, type LuaEngine } from 'wasmoon';
import type { FieldList } from './config/schema';
import type { LoadedPlugin } from './plugins';
import type { RequestState } from './request-state';

export const POST_FUNCTION_PRIORITY = -1000;

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
  phases: new Set(['body_filter']),
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
local ngx_proxy = setmetatable({}, { __index = function(_, k)
  if k == 'arg' then return CUR.arg end
  if k == 'ctx' then return CUR.ctx end
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
local kong_proxy = { ctx = { shared = shared }, log = log }
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
return H
`;

interface LuaHarness {
  compile(key: string, code: string): void;
  body_filter(key: string, rid: string, chunk: string, eof: boolean): string | null | undefined;
}

let engine: Promise<{ lua: LuaEngine; h: LuaHarness }> | undefined;
/** The request whose chunk is being filtered: the Lua -> JS calls act on it. */
let current: RequestState | undefined;
const compiledKeys = new Set<string>();

function vm(): Promise<{ lua: LuaEngine; h: LuaHarness }> {
  engine ??= (async () => {
    const lua = await new LuaFactory().createEngine();
    lua.global.set('__js', {
      shared_get: (k: unknown) => {
        const v = current?.ctxShared.get(String(k));
        return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : null;
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
