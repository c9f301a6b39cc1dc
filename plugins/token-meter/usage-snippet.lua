-- token-meter usage reader: Kong's bundled post-function runs this in body_filter (sandboxed,
-- no require). It reads the upstream's token usage from the final SSE event of a stream
-- (stream_options.include_usage) or from a JSON body, and writes it to kong.ctx.shared.llm_usage
-- for every JS plugin's log phase (format: lib/tokens/usage.ts). It never changes the body and
-- keeps at most a few KiB per request: streams stay streams.
-- Provider formats (read before ai-proxy converts them, docs/operations.md): OpenAI (chat,
-- Responses, embeddings), Anthropic (`usage` in message_start and message_delta), Gemini
-- (`usageMetadata`), Bedrock Converse (`usage` with inputTokens/outputTokens, JSON or the
-- binary event stream's `metadata` event), Cohere (`billed_units`, v1 `meta` or v2 `usage`),
-- Ollama (ai-proxy's llama2 with llama2_format ollama: no `usage`, but `prompt_eval_count` and
-- `eval_count` after `"done": true`, in its JSON answer or its NDJSON stream's last line).
-- Anthropic and Bedrock count prompt-cache reads and writes apart from their input tokens: the
-- prompt billed is all three, the cache reads also reported as cached.
local KEYS = { '"usage%a*"%s*:%s*{', '"billed_units"%s*:%s*{', '"done"%s*:%s*true' }
local function count(s, a, b)
  return string.match(s, '"' .. a .. '"%s*:%s*(%d+)') or (b and string.match(s, '"' .. b .. '"%s*:%s*(%d+)'))
end
-- What an Anthropic or Bedrock usage object says of the prompt: kept from message_start.
local function remember(c, s)
  local p = count(s, 'input_tokens', 'prompt_tokens') or count(s, 'promptTokenCount', 'inputTokens')
  if p then c.tm_in = tonumber(p) end
  local r = count(s, 'cache_read_input_tokens', 'cacheReadInputTokens')
  if r then c.tm_cr = tonumber(r) end
  local w = count(s, 'cache_creation_input_tokens', 'cacheWriteInputTokens')
  if w then c.tm_cw = tonumber(w) end
end
return function()
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  local c = ngx.ctx
  if c.tm_done then return end
  chunk = chunk or ''
  if c.tm_sse == nil then
    -- SSE or JSON, from the first bytes of the body (which may come a byte at a time).
    local head = string.match((c.tm_head or '') .. chunk, '^%s*(.*)$')
    if #head >= 5 or eof then
      -- OpenAI's streams start with `data:`, Anthropic's with `event:`.
      c.tm_sse = string.sub(head, 1, 5) == 'data:' or string.sub(head, 1, 6) == 'event:'
      c.tm_events = string.sub(head, 1, 6) == 'event:'
      c.tm_object = string.sub(head, 1, 1) == '{'
    else
      c.tm_head = head
    end
  end
  local data = (c.tm_carry or '') .. chunk
  if c.tm_model == nil then
    local m = string.match(data, '"model"%s*:%s*"([^"]*)"')
    if m then c.tm_model = string.sub(string.gsub(m, '[^%w_.:/-]', ''), 1, 128) end
  end
  -- The last `"usage": {` (Gemini: `"usageMetadata": {`; Cohere: `"billed_units": {`; Ollama:
  -- `"done": true`, its counts follow) seen starts a window of up to 1 KiB.
  local at = nil
  for _, key in ipairs(KEYS) do
    local pos = 1
    while true do
      local s, e = string.find(data, key, pos)
      if not s then break end
      if not at or s > at then at = s end
      pos = e + 1
      -- A whole usage object here: keep its prompt counts (Anthropic's message_start).
      local obj = string.match(data, '^"[%a_]+"%s*:%s*(%b{})', s)
      if obj then remember(c, obj) end
    end
  end
  if at then
    c.tm_win = string.sub(data, at, at + 1023)
  elseif c.tm_win and #c.tm_win < 1024 then
    c.tm_win = c.tm_win .. string.sub(chunk, 1, 1024 - #c.tm_win)
  end
  -- The prompt count of any usage seen: Anthropic's stream gives it in message_start and only the
  -- output count in the last usage (message_delta, cumulative).
  if c.tm_win then remember(c, c.tm_win) end
  -- Anthropic's stream is whole once message_stop came: cut before it, its last usage may be
  -- message_start's (output_tokens 1), so it is not read and the request is billed at its bound.
  if c.tm_events and string.find(data, '"message_stop"', 1, true) then c.tm_stop = true end
  -- Keep a short tail so a key split across two chunks is still found.
  c.tm_carry = string.sub(data, -64)
  -- A JSON object's usage, once whole, is final (not a JSON array's: Gemini streams one, with
  -- cumulative usage in each element): in Kong's buffered responses (ai-proxy's
  -- JSON answers) a plugin before ai-proxy never sees eof, since ai-proxy's body_filter ends the
  -- body in the same call.
  -- Ollama's counts are whole once eval_count's number has ended (its last field but one).
  local whole = c.tm_object and c.tm_win and (string.find(c.tm_win, '^"[%a_]+"%s*:%s*%b{}')
    or string.find(c.tm_win, '^"done"%s*:%s*true.-"eval_count"%s*:%s*%d+[^%d]'))
  if not eof and not whole then return end
  c.tm_done = true
  local w = c.tm_win
  if not w or (c.tm_events and not c.tm_stop) then return end
  local function num(name)
    return tonumber(string.match(w, '"' .. name .. '"%s*:%s*(%d+)'))
  end
  local base = num('prompt_tokens') or num('input_tokens') or num('promptTokenCount')
    or num('inputTokens') or num('prompt_eval_count') or c.tm_in
  -- Anthropic's and Bedrock's cache reads and writes, counted apart from their input tokens.
  local cr = num('cache_read_input_tokens') or num('cacheReadInputTokens') or c.tm_cr
  local cw = num('cache_creation_input_tokens') or num('cacheWriteInputTokens') or c.tm_cw
  local prompt = base and base + (cr or 0) + (cw or 0)
  local total = num('total_tokens') or num('totalTokenCount') or num('totalTokens')
  -- Gemini's counts are cumulative; its thinking tokens are billed as output.
  local candidates = num('candidatesTokenCount')
  local gemini = candidates and candidates + (num('thoughtsTokenCount') or 0)
  -- Embeddings report prompt and total only: their completion is what is left (0).
  local completion = num('completion_tokens') or num('output_tokens') or num('outputTokens')
    or gemini or num('eval_count') or (prompt and total and total >= prompt and total - prompt)
  if not prompt or not completion then return end
  if cr or cw or not total then total = prompt + completion end
  local cached = num('cached_tokens') or num('cachedContentTokenCount') or cr or 0
  local usage = string.format('v=1;prompt=%d;completion=%d;total=%d;cached=%d;model=%s;from=%s',
    prompt, completion, total, cached, c.tm_model or '', c.tm_sse and 'sse' or 'json')
  kong.ctx.shared.llm_usage = usage
  kong.log.set_serialize_value('llm_usage', {
    prompt_tokens = prompt, completion_tokens = completion, total_tokens = total,
    cached_tokens = cached, source = c.tm_sse and 'sse' or 'json',
  })
end
