-- The harness's Lua side of post-function and pre-function (harness/post-function.ts): the
-- sandbox of kong/tools/kong-lua-sandbox.lua (BASE_ENV) built inside the VM, and the entries
-- the harness calls per phase. Read by post-function.ts; the build copies it beside the JS.
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
-- ngx.encode_base64 (ngx's C function in Kong), in Lua: the capture snippet's `b64;` answers.
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64char(n) return string.sub(B64, n + 1, n + 1) end
local function encode_base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64char(math.floor(n / 262144) % 64) .. b64char(math.floor(n / 4096) % 64)
      .. (b and b64char(math.floor(n / 64) % 64) or '=') .. (c and b64char(n % 64) or '=')
  end
  return table.concat(out)
end
local ngx_proxy = setmetatable({}, { __index = function(_, k)
  if k == 'arg' then return CUR.arg end
  if k == 'encode_base64' then return encode_base64 end
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
  if r == '\1exit' then error(EXIT) end
  if type(r) == 'string' and string.sub(r, 1, 4) == '\1err' then error(string.sub(r, 5), 3) end
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
  for line in string.gmatch(lines, '([^\n]*)\n') do
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
      for k, v in pairs(headers) do hs = hs .. tostring(k) .. '\n' .. tostring(v) .. '\n' end
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
-- Runs the compiled snippets of `key` in order; a snippet that returns a function on its first
-- call is replaced by that function (Kong's pre-/post-function closure form).
local function run_all(key)
  for _, c in ipairs(compiled[key] or {}) do
    if c.first then
      c.first = false
      local res = c.fn()
      if type(res) == 'function' then c.fn = res; res() end
    else
      c.fn()
    end
  end
end

-- A chunk with bytes a JS string cannot carry into Lua as they are (NUL, 0x80-0xff: wasmoon
-- passes strings as UTF-8 C strings) arrives hex-encoded (`hex` true) and is decoded here, so the
-- snippet sees the bytes nginx would give it (a binary event stream, UTF-8 text).
local function unhex(h)
  return (string.gsub(h, '%x%x', function(x) return string.char(tonumber(x, 16)) end))
end

function H.body_filter(key, rid, chunk, eof, hex)
  if hex then chunk = unhex(chunk) end
  local r = requests[rid]
  if not r then r = { ctx = {} }; requests[rid] = r end
  r.arg = { chunk, eof }
  CUR = r
  local ok, err = pcall(run_all, key)
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
  local ok, err = pcall(run_all, key)
  CUR = nil
  requests[rid] = nil
  if ok then return 'ret' end
  if err == EXIT then return 'exit' end
  return tostring(err)
end
return H
