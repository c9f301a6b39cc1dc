-- tenant-auth's guard: Kong's bundled post-function runs this in access (priority -1000), after
-- every plugin of the chain, only when none of them answered the request itself. Reaching it
-- without a TenantContext means tenant-auth never ran: its plugin server was down (being
-- respawned after a crash). Kong only logs a failed plugin-server call and carries on
-- (kong/runloop/plugin_servers/rpc/mp_rpc.lua handle_event), so without this the request would
-- go upstream untenanted. With the chain co-hosted in one process a crash takes every plugin
-- down at once and none of them is left to refuse: this keeps the front door closed meanwhile.
-- The same for the meter: a POST token-meter did not meter (its plugin server died between
-- tenant-auth's phase and its own) would be served and never billed. Kong lists the plugins
-- with a log phase it will run for this request in ngx.ctx.plugins.log, collected in access
-- before each one's handler runs (kong/runloop/plugins_iterator.lua): token-meter among them
-- and no meter state in kong.ctx.shared means its access did not complete. Where the chain's one
-- access phase runs token-meter's work and its log is run by tenant-auth's (hidden from Kong's
-- list), the merge notes it in ngx.ctx.kta_chain_logs (lib/pluginserver/pdk-batch.lua).
local function runs_on_this_request(name)
  local merged = ngx.ctx and ngx.ctx.kta_chain_logs
  if type(merged) == 'table' and merged[name] then return true end
  local collected = ngx.ctx and ngx.ctx.plugins
  local log = collected and collected.log
  if type(log) ~= 'table' then return false end
  for i = 1, (log[0] or 0), 2 do
    local plugin = log[i]
    if type(plugin) == 'table' and plugin.name == name then return true end
  end
  return false
end

local function refuse(message, code)
  return kong.response.exit(503, { error = {
    message = message,
    type = 'service_unavailable',
    code = code,
    request_id = ngx.var.kong_request_id,
  } }, { ['Retry-After'] = '1' })
end

return function()
  local shared = kong.ctx.shared
  if shared.tenant_context == nil then
    return refuse('the gateway could not establish the tenant of this request; retry shortly',
      'tenant_unavailable')
  end
  if runs_on_this_request('token-meter') and shared.token_meter == nil
      and kong.request.get_method() == 'POST' then
    return refuse('the gateway could not meter this request; retry shortly',
      'metering_unavailable')
  end
end
