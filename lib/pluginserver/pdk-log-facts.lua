-- What the chain's log phases read of the response, saved where the PDK batch snippet
-- (lib/pluginserver/pdk-batch.lua) finds it: Kong's bundled pre-function runs this in log, in the
-- request (before any plugin server's log timer starts), and keeps the same values Kong saves for
-- those timers (kong/runloop/plugin_servers/plugin.lua: ngx.status, the response headers, the
-- response's source). The plugins then read them in one exchange instead of one each. Names and
-- numbers only; the table lives and dies with the request's kong.ctx.shared.
return function()
  kong.ctx.shared.kta_log = {
    status = kong.response.get_status(),
    headers = kong.response.get_headers(),
    source = kong.response.get_source(),
  }
end
