/**
 * For the tests that run kong.yml's Lua snippets under LuaJIT: the globals Kong 3.9.3's sandbox
 * (kong/tools/kong-lua-sandbox.lua) gives a pre- or post-function snippet, as the fields of a
 * Lua table constructor, and the lines that load a snippet (`code`) into a table `env` holding
 * them and what the driver adds (`kong`, `ngx`). The sandbox gives no setmetatable, require,
 * loadstring or io: a snippet that needs one fails here as it would on Kong.
 */
export const SANDBOX_GLOBALS = `
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, math = math, table = table,`;

/** `local fn = <the snippet's function>`, loaded with `env` = the sandbox's globals + `extra`. */
export function loadSnippet(chunkName: string, extra: string): string {
  return `local env = {${SANDBOX_GLOBALS} ${extra} }
local f = assert(loadstring(code, '=${chunkName}'))
setfenv(f, env)
local fn = f()`;
}
