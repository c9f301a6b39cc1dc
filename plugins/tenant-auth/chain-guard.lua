-- tenant-auth's guard: Kong's bundled post-function runs this in access (priority -1000), after
-- every plugin of the chain, only when none of them answered the request itself. Reaching it
-- without a TenantContext means tenant-auth never ran: its plugin server was down (being
-- respawned after a crash). Kong only logs a failed plugin-server call and carries on
-- (kong/runloop/plugin_servers/rpc/mp_rpc.lua handle_event), so without this the request would
-- go upstream untenanted. With the chain co-hosted in one process a crash takes every plugin
-- down at once and none of them is left to refuse: this keeps the front door closed meanwhile.
return function()
  if kong.ctx.shared.tenant_context == nil then
    return kong.response.exit(503, { error = {
      message = 'the gateway could not establish the tenant of this request; retry shortly',
      type = 'service_unavailable',
      code = 'tenant_unavailable',
      request_id = ngx.var.kong_request_id,
    } }, { ['Retry-After'] = '1' })
  end
end
