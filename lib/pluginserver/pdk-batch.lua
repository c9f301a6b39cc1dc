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
-- One access phase for the chain (lib/pluginserver/chain-access.ts): called by the first plugin
-- of the chain (`owner`) at its access phase's first exchange, in the co-hosted plugin server.
-- It finds the plugins Kong will run next for this request, in Kong's order, that the same
-- plugin-server socket serves and `names` lists, stopping at the first other plugin with an
-- access phase (a foreign plugin must see the request as the plugins before it left it). For
-- each it claims the instance Kong would (the plugin server's own get_instance_id, under that
-- plugin's id), then hides their access handlers from Kong's collecting iterator for this request
-- only (ngx.ctx.plugins.ws, which kong/runloop/plugins_iterator.lua get_next_and_collect reads
-- at every step; its header_filter, body_filter and log are collected as before). The owner then
-- runs their access work in its own phase. A merged plugin that `logs` lists also has its log
-- handler hidden (Kong neither collects nor starts its log phase; the owner's log runs its log
-- work), noted in ngx.ctx.kta_chain_logs for kong.yml's chain guard. Answers { name, instance
-- id, log hidden, ... } or nil (nothing merged: Kong runs each phase itself); never raises.
local function compound(r, s, u) return (r or '') .. ':' .. (s or '') .. ':' .. (u or '') end
local function config_for(ctx, combos, plugin)
  local c = combos and combos[plugin.name]
  if not c then return nil end
  local h = plugin.handler
  -- plugins_iterator.lua lookup_cfg, in its order.
  local r = (not h.no_route and ctx.route) and ctx.route.id or nil
  local s = (not h.no_service and ctx.service) and ctx.service.id or nil
  local u = (not h.no_consumer and ctx.authenticated_consumer) and ctx.authenticated_consumer.id or nil
  return (r and s and u and c[compound(r, s, u)]) or (r and u and c[compound(r, nil, u)])
    or (s and u and c[compound(nil, s, u)]) or (r and s and c[compound(r, s, nil)])
    or (u and c[compound(nil, nil, u)]) or (r and c[compound(r, nil, nil)])
    or (s and c[compound(nil, s, nil)]) or c[compound()]
end
local function socket_of(plugin)
  local def = type(plugin.handler) == 'table' and plugin.handler.server_def
  return type(def) == 'table' and def.socket or nil
end
-- Per worker, for the plugin list of the current config only (a reload makes a new list), so
-- nothing grows: the plugins with their access hidden, and the lists and ws tables made of them.
-- (The sandbox has no setmetatable: no weak tables, no __index.)
local made = { list = nil, hidden = {}, quiet = {}, ws = {} }
local function without_access(plugin, no_log)
  local cache = no_log and made.quiet or made.hidden
  local copy = cache[plugin]
  if copy then return copy end
  local h = {}
  for k, v in pairs(plugin.handler) do h[k] = v end
  h.access = nil
  if no_log then h.log = nil end
  copy = {}
  for k, v in pairs(plugin) do copy[k] = v end
  copy.handler = h
  cache[plugin] = copy
  return copy
end
local function shadow_of(ws, merged, quiet)
  local list = ws.plugins
  if made.list ~= list then made = { list = list, hidden = {}, quiet = {}, ws = {} } end
  local parts = {}
  for j, i in ipairs(merged) do parts[j] = quiet[i] and (i .. 'q') or tostring(i) end
  local key = table.concat(parts, ',')
  local w = made.ws[key]
  if w then return w end
  local s = { [0] = list[0] }
  for i = 1, list[0] do s[i] = list[i] end
  for _, i in ipairs(merged) do s[i] = without_access(list[i], quiet[i]) end
  w = {}
  for k, v in pairs(ws) do w[k] = v end
  w.plugins = s
  made.ws[key] = w
  return w
end
local function take(owner, names, logs)
  local ctx = ngx.ctx
  local collected = ctx.plugins
  local ws = type(collected) == 'table' and collected.ws
  if type(ws) ~= 'table' or type(ws.plugins) ~= 'table' then return nil end
  local list, combos = ws.plugins, ws.combos
  local allowed, logged = {}, {}
  for _, n in ipairs(names) do allowed[n] = true end
  for _, n in ipairs(type(logs) == 'table' and logs or {}) do logged[n] = true end
  local me
  for i = 1, list[0] do
    if list[i].name == owner then me = i; break end
  end
  local socket = me and socket_of(list[me])
  if not socket then return nil end
  local merged, configs = {}, {}
  for i = me + 1, list[0] do
    local p = list[i]
    local cfg = config_for(ctx, combos, p)
    if cfg then
      if allowed[p.name] and socket_of(p) == socket
          and type(p.handler.instance_callbacks) == 'table' and p.handler.access then
        merged[#merged + 1] = i
        configs[#configs + 1] = cfg
      elseif p.handler.access then
        break
      end
    end
  end
  if #merged == 0 then return nil end
  local out, own, quiet, quiet_names = {}, ctx.plugin_id, {}, nil
  for j, i in ipairs(merged) do
    local p, cfg = list[i], configs[j]
    kong.vault.update(cfg)
    ctx.plugin_id = cfg.__plugin_id -- get_instance_id keys the instance by kong.plugin.get_id()
    local ok, id = pcall(p.handler.instance_callbacks.get_instance_id, p.handler, cfg)
    ctx.plugin_id = own
    if not ok or id == nil then return nil end
    local q = logged[p.name] == true and p.handler.log ~= nil
    if q then
      quiet[i] = true
      quiet_names = quiet_names or {}
      quiet_names[p.name] = true
    end
    out[#out + 1] = p.name
    out[#out + 1] = id
    out[#out + 1] = q
  end
  ctx.kta_chain_ws = ws
  ctx.kta_chain_logs = quiet_names
  collected.ws = shadow_of(ws, merged, quiet)
  return out
end
local kta_pdk = {
  chain = function(owner, names, logs)
    local ok, out = pcall(take, owner, names, logs)
    if ok then return out end
    return nil
  end,
  -- The owner could not run what chain merged: Kong runs those phases itself after all.
  unchain = function()
    local ctx = ngx.ctx
    if ctx.kta_chain_ws and type(ctx.plugins) == 'table' then ctx.plugins.ws = ctx.kta_chain_ws end
    ctx.kta_chain_logs = nil
  end,
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
