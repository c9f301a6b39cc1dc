-- What the chain's log phases read of the response, saved where the PDK batch snippet
-- (lib/pluginserver/pdk-batch.lua) finds it: Kong's bundled pre-function runs this in log, in the
-- request (before any plugin server's log timer starts), and keeps the same values Kong saves for
-- those timers (kong/runloop/plugin_servers/plugin.lua: ngx.status, the response headers, the
-- response's source). The plugins then read them in one exchange instead of one each. Names and
-- numbers only; the tables live and die with the request's kong.ctx.shared.
-- kta_log_facts: the few fields of kong.log.serialize() the plugins record (request id, status,
-- source, upstream status, latencies), computed as Kong 3.9.3's serializer does (kong/pdk/log.lua;
-- the request id as kong/observability/tracing/request_id.lua get()), so a log phase reads them with
-- one ctx.shared read (batched with its others) instead of the whole serialized request (several KB
-- encoded by nginx, decoded by Node). Kong.log has set the latencies before any plugin's log runs.
return function()
  local ctx, var = ngx.ctx, ngx.var
  local status = kong.response.get_status()
  local source = kong.response.get_source()
  kong.ctx.shared.kta_log = {
    status = status,
    headers = kong.response.get_headers(),
    source = source,
  }
  kong.ctx.shared.kta_log_facts = {
    request_id = ctx.request_id or var.kong_request_id or '',
    status = status,
    source = source,
    upstream_status = var.upstream_status or ctx.buffered_status or '',
    proxy_latency = ctx.KONG_WAITING_TIME or -1,
    request_latency = (tonumber(var.request_time) or -0.001) * 1000,
  }
end
