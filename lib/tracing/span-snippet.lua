-- Tenant and chain decisions on the request's trace: Kong's bundled pre-function runs this in
-- log (sandboxed, no require), before the bundled opentelemetry plugin (priority 14) exports the
-- request's spans from its own log phase. It tags Kong's root span (`kong`, the request) with
-- what the chain already publishes: serializer values (tenant-auth `tenant`, retrieval-injector
-- `retrieval`, the usage post-function `llm_usage`), kong.ctx.shared (tenant-cache's status)
-- and the response headers the plugins set (budget, queue wait, breaker). Names, states and
-- numbers only, each cut to a short safe alphabet: never a request header, a body or a key.
-- It also drops the query string from `http.url`: a key sent as ?apikey= must not reach a trace.
-- Tracing off (kong.conf tracing_instrumentations = off) or a trace not sampled: nothing to do.
-- The co-hosted chain runs the access of the plugins after tenant-auth inside tenant-auth's
-- (lib/pluginserver/chain-access.ts): their time would be tenant-auth's span's. tenant-auth
-- publishes each one's start and end (kong.ctx.shared.kta_merged_spans, epoch µs), and each
-- becomes a child span of tenant-auth's access span, named as Kong names a plugin's access
-- span, with `kong.plugin.merged = true`; a plugin that exited ends with its parent.
local function merged_spans(tracing)
  local v = kong.ctx.shared.kta_merged_spans
  if type(v) ~= 'string' or v == '' or #v > 1024 or not tracing.get_spans then return end
  local spans = tracing.get_spans()
  local parent
  for i = 1, (type(spans) == 'table' and spans[0] or 0) do
    local sp = spans[i]
    if type(sp) == 'table' and sp.name == 'kong.access.plugin.tenant-auth' then parent = sp end
  end
  local from, to = parent and parent.start_time_ns, parent and parent.end_time_ns
  if not from or not to then return end
  for name, a, b in string.gmatch(v, '([%w_-]+):(%d+):(%d*)') do
    local s = math.max(tonumber(a) * 1000, from)
    local e = math.min(b ~= '' and tonumber(b) * 1000 or to, to)
    if e < s then e = s end
    local span = tracing.start_span('kong.access.plugin.' .. name, {
      start_time_ns = s, parent = parent, attributes = { ['kong.plugin.merged'] = true },
    })
    span:finish(e)
  end
end
return function()
  local tracing = kong.tracing
  local span = tracing and tracing.get_root_span and tracing.get_root_span()
  if type(span) ~= 'table' or span.should_sample == false or not span.set_attribute then return end
  local function name(v)
    if type(v) ~= 'string' then return nil end
    v = string.sub(string.gsub(v, '[^%w_.:/@+-]', ''), 1, 128)
    if v == '' then return nil end
    return v
  end
  local function count(v)
    if type(v) == 'number' and v >= 0 then return math.floor(v) end
    if type(v) == 'string' and string.match(v, '^%d+$') and #v <= 12 then return tonumber(v) end
    return nil
  end
  local function set(k, v)
    if v ~= nil then span:set_attribute(k, v) end
  end
  pcall(merged_spans, tracing)
  local url = span.attributes and span.attributes['http.url']
  if type(url) == 'string' and string.find(url, '?', 1, true) then
    span:set_attribute('http.url', string.match(url, '^[^?]*'))
  end
  local s = kong.log.serialize() or {}
  local tenant = type(s.tenant) == 'table' and s.tenant or {}
  set('tenant.id', name(tenant.id))
  set('tenant.plan', name(tenant.plan))
  set('tenant.source', name(tenant.source))
  local model = type(tenant.model) == 'table' and tenant.model or {}
  set('ai.model.requested', name(model.requested))
  set('ai.model.decision', name(model.decision))
  local h = kong.response.get_headers() or {}
  local function header(k)
    local v = h[k]
    if type(v) == 'table' then v = v[1] end
    return v
  end
  -- The circuit breaker's fallback model replaces the one tenant-auth chose.
  set('ai.model.served', name(header('x-circuit-breaker-fallback-model')) or name(model.served))
  set('cache.status', name(kong.ctx.shared.tenant_cache_status))
  set('cache.match', name(header('x-cache-match')))
  set('budget.decision', name(header('x-budget-state')))
  set('queue.wait_ms', count(header('x-queue-wait-ms')))
  set('queue.class', name(header('x-service-class')))
  set('ratelimit.scope', name(header('x-ratelimit-scope')))
  set('breaker.state', name(header('x-circuit-breaker-state')))
  set('breaker.fallback', name(header('x-circuit-breaker-fallback')))
  local r = type(s.retrieval) == 'table' and s.retrieval or {}
  set('retrieval.status', name(r.status))
  set('retrieval.chunks', count(r.chunks))
  local u = type(s.llm_usage) == 'table' and s.llm_usage or {}
  set('ai.usage.prompt_tokens', count(u.prompt_tokens))
  set('ai.usage.completion_tokens', count(u.completion_tokens))
  set('ai.usage.cached_tokens', count(u.cached_tokens))
end
