-- token-meter's bound after Kong's ai-request-transformer: Kong's bundled post-function runs this
-- in access (priority -1000), after every plugin of the route, on requests no plugin answered.
-- ai-request-transformer (priority 777, after token-meter's 800 and retrieval-injector's 790)
-- replaces the body the upstream receives with its own LLM's answer (Kong 3.9.3,
-- kong/plugins/ai-request-transformer/filters/transform-request.lua). What token-meter reserved
-- the budget for (the completion bound per choice, the number of choices, the model it priced)
-- then survives only if that LLM copied it: a bound it dropped or raised is a silent overage.
-- So, only on a request that plugin transformed, and only when token-meter metered it, the body
-- as it now is gets token-meter's bound again: every completion bound it carries, in the
-- format it is in, is lowered to the reserved one and one is added where none is; `n` no higher
-- than reserved; without ai-proxy on the route (which names its own model and converts the
-- body to its provider's format), `model` and `stream` as token-meter reserved them, and a
-- stream's usage asked for. A body the
-- transformer left that is not a JSON object is refused (502), never sent unbounded.
-- The reservation is read from token-meter's own state (kong.ctx.shared.token_meter, JSON it
-- wrote: plugins/token-meter/state.ts). Without a transformed request this costs two lookups.
-- The transformer's own LLM usage (Kong's count, in its namespaced ctx) goes to
-- kong.ctx.shared.kta_transform_usage: token-meter bills it to the tenant as a line of its own.
-- Behind ai-proxy it also asks the provider for an uncompressed answer again (below).
-- Behind ai-proxy with provider huggingface, every metered request gets the bound back too:
-- Kong 3.9.3's driver (kong/llm/drivers/huggingface.lua, set_default_parameters) removes a chat's
-- `max_tokens` and sends `parameters.max_lenght` (sic) instead, which Hugging Face's chat API
-- does not read: without this, the answer is unbounded while the budget reserved for the bound.
local NS = 'ai-request-transformer-transform-request'

local function transformed()
  local ai = ngx.ctx and ngx.ctx.ai_namespaced_ctx
  local t = ai and ai[NS]
  return type(t) == 'table' and t.transformed == true
end

-- ai-proxy has header_filter and body_filter phases (Kong 3.9.3 kong/llm/plugin/base.lua: a log
-- phase only with a filter that needs one), so Kong collected it for this request in those lists
-- before its access ran, each plugin followed by its config (kong/runloop/plugins_iterator.lua).
-- Its provider's name, '' when unknown; nil without ai-proxy on the request.
local function ai_proxy_provider()
  local collected = ngx.ctx.plugins
  if type(collected) ~= 'table' then return nil end
  for _, phase in ipairs({ 'header_filter', 'body_filter', 'log' }) do
    local list = collected[phase]
    if type(list) == 'table' then
      for i = 1, (list[0] or 0), 2 do
        if type(list[i]) == 'table' and list[i].name == 'ai-proxy' then
          local conf = list[i + 1]
          local model = type(conf) == 'table' and conf.model
          local provider = type(model) == 'table' and model.provider
          return type(provider) == 'string' and provider or ''
        end
      end
    end
  end
  return nil
end

local function refuse()
  return kong.response.exit(502, { error = {
    message = 'the request transformed by ai-request-transformer is not a JSON object; '
      .. 'it was not forwarded',
    type = 'server_error',
    code = 'transformed_request_invalid',
    request_id = ngx.var.kong_request_id,
  } })
end

local changed = false
local function bound(tbl, key, limit, add)
  local v = tbl[key]
  if v == nil and not add then return end
  if type(v) ~= 'number' or v ~= v or v > limit or v < 1 then
    tbl[key] = limit
    changed = true
  end
end

return function()
  -- Kong's ai-proxy asks its provider for gzip (its openai, azure and bedrock drivers set
  -- Accept-Encoding in access, after token-meter's identity): the usage reader reads the answer's
  -- bytes, so on a metered request the provider is asked for identity again.
  local provider = kong.ctx.shared.token_meter ~= nil and ai_proxy_provider()
  if provider then
    kong.service.request.set_header('Accept-Encoding', 'identity')
  end
  local was_transformed = transformed()
  if not was_transformed and provider ~= 'huggingface' then return end
  local state = kong.ctx.shared.token_meter
  if type(state) ~= 'string' then return end
  -- The transformer's own LLM call is the tenant's spend too: its usage, as Kong counted it, for
  -- token-meter's log (a ledger line of its own; usage format: lib/tokens/usage.ts).
  local t = was_transformed and ngx.ctx.ai_namespaced_ctx[NS]
  local tp = t and tonumber(t.llm_prompt_tokens_count)
  local tc = t and tonumber(t.llm_completion_tokens_count)
  if tp and tc and tp + tc > 0 then
    local tm = type(t.model) == 'table' and type(t.model.name) == 'string' and t.model.name or ''
    kong.ctx.shared.kta_transform_usage = string.format(
      'v=1;prompt=%d;completion=%d;total=%d;cached=0;model=%s;from=json', tp, tc, tp + tc,
      string.sub((string.gsub(tm, '[^%w_.:/-]', '')), 1, 128))
  end
  local limit = tonumber(state:match('"maxTokensPerChoice":(%d+)'))
  local n = tonumber(state:match('"n":(%d+)'))
  if not limit or not n or limit < 1 then return end
  local body = kong.request.get_body('application/json')
  if type(body) ~= 'table' then return refuse() end
  changed = false
  local responses = body.input ~= nil and body.messages == nil and body.prompt == nil
  if not provider then
    local model = state:match('"modelServed":"([^"\\]*)"')
    if model and body.model ~= model then
      body.model = model
      changed = true
    end
    local stream = state:match('"stream":true') ~= nil
    if (body.stream == true) ~= stream then
      body.stream = stream
      changed = true
    end
    -- A chat stream's usage comes in its last chunk only when asked for (token-meter asks).
    if stream and not responses and (type(body.stream_options) ~= 'table'
        or body.stream_options.include_usage ~= true) then
      if type(body.stream_options) ~= 'table' then body.stream_options = {} end
      body.stream_options.include_usage = true
      changed = true
    end
  end
  if type(body.contents) == 'table' then
    -- Gemini (ai-proxy's gemini driver): generationConfig.maxOutputTokens.
    if type(body.generationConfig) ~= 'table' then body.generationConfig = {} end
    bound(body.generationConfig, 'maxOutputTokens', limit, true)
  elseif type(body.inferenceConfig) == 'table' then
    -- Bedrock Converse (ai-proxy's bedrock driver): inferenceConfig.maxTokens.
    bound(body.inferenceConfig, 'maxTokens', limit, true)
  elseif type(body.inputs) == 'string' and type(body.parameters) == 'table' then
    -- Hugging Face's text generation (ai-proxy's huggingface driver, completions).
    bound(body.parameters, 'max_new_tokens', limit, true)
  elseif responses then
    -- OpenAI's Responses API.
    bound(body, 'max_output_tokens', limit, true)
  else
    -- Chat and completions: OpenAI, Mistral, Anthropic and Cohere name it max_tokens; OpenAI's
    -- reasoning models take only max_completion_tokens (request-body.ts, the same rule).
    local model = type(body.model) == 'string' and body.model or ''
    local newer = model:match('^o%d') or model:match('^gpt%-5')
    bound(body, 'max_completion_tokens', limit, newer and body.max_tokens == nil)
    bound(body, 'max_tokens', limit, body.max_completion_tokens == nil)
  end
  bound(body, 'n', n, false)
  if changed and not was_transformed then
    kong.service.request.set_body(body, 'application/json')
  elseif changed then
    kong.log.warn('ai-request-transformer changed what token-meter reserved for; ',
      'its bound, choices and model were applied again')
    kong.service.request.set_body(body, 'application/json')
  end
end
