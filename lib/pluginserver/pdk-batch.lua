-- Many PDK calls in one exchange: Kong's bundled pre-function runs this in access (sandboxed, no
-- require), before every plugin of the chain. It puts one table of functions in the request's
-- kong.ctx.shared; a plugin server of ours calls `kong.ctx.shared.kta_pdk.run` with a list of
-- PDK calls, and Kong's RPC (mp_rpc.lua, which resolves a method name through the `kong` table)
-- runs them in order in one round trip. Each call does what the same call sent alone does: the
-- same function, the same order, a Lua error stops the phase as it would have. Results come back
-- one per call as { v = value } ({} for nil); a raw body as { b = base64 } (bytes kept exact);
-- a read marked as fetched ahead that failed as { e = message }; { x = true } for a saved value
-- that is not here (below).
-- The functions are made once per worker and hold no request: Kong caches the resolved method.
-- Without this snippet the plugins make the same calls one by one (lib/pluginserver/batch.ts).
local SPECIAL = {
  ['kong.ctx.shared.get'] = function(k) return kong.ctx.shared[k] end,
  ['kong.ctx.shared.set'] = function(k, v) kong.ctx.shared[k] = v end,
  ['kong.nginx.get_var'] = function(v) return ngx.var[v] end,
}
local BINARY = {
  ['kong.request.get_raw_body'] = true,
  ['kong.response.get_raw_body'] = true,
  ['kong.service.response.get_raw_body'] = true,
}
-- In the log timer Kong answers these from the copy it saved of the request (plugin.lua
-- exposed_api); called here they would read the timer. kong.yml's pre-function log snippet
-- (lib/pluginserver/pdk-log-facts.lua) saves the same values in ctx.shared.kta_log first; without
-- them the answer is { x = true }: not here, ask Kong alone.
local LOGGED = {
  ['kong.response.get_status'] = 'status',
  ['kong.response.get_headers'] = 'headers',
  ['kong.response.get_source'] = 'source',
}
local resolved = {}
local function resolve(name)
  local f = SPECIAL[name] or resolved[name]
  if f then return f end
  local t = nil
  for seg in string.gmatch(name, '[^.]+') do
    if t == nil then
      if seg ~= 'kong' then return nil end
      t = kong
    elseif type(t) == 'table' then
      t = t[seg]
    else
      return nil
    end
  end
  if type(t) ~= 'function' then return nil end
  resolved[name] = t
  return t
end
local kta_pdk = {
  run = function(calls)
    local out = {}
    for i = 1, #calls do
      local c = calls[i]
      local name, args, n = c[1], c[2] or {}, c[3] or 0
      local f = resolve(name)
      if not f then error('kta_pdk: no PDK method ' .. tostring(name)) end
      local ok, v = true, nil
      local saved = ngx.get_phase() == 'timer' and LOGGED[name]
      if saved then
        local facts = kong.ctx.shared.kta_log
        if facts then v = facts[saved] else ok, v = false, nil end
      elseif c[4] then
        -- A read fetched ahead (the plugin may not make it this time): its error is returned,
        -- not raised; the plugin that does make the call then makes it alone.
        ok, v = pcall(f, unpack(args, 1, n))
      else
        v = f(unpack(args, 1, n))
      end
      if saved and not ok then
        out[i] = { x = true }
      elseif not ok then
        out[i] = { e = tostring(v) }
      elseif v == nil then
        out[i] = {}
      elseif BINARY[name] and type(v) == 'string' then
        out[i] = { b = ngx.encode_base64(v) }
      else
        out[i] = { v = v }
      end
    end
    return out
  end,
}
return function()
  kong.ctx.shared.kta_pdk = kta_pdk
end
