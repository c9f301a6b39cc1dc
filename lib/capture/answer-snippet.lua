-- capture answer reader (issue 23): Kong's bundled post-function runs this in body_filter
-- (sandboxed, no require). Only for a request tenant-auth drafted for capture (its tenant opted
-- in: kong.ctx.shared.kta_capture is set), or whose answer makes a stored object it records
-- (kong.ctx.shared.kta_objects, `store: scoped`), or that tenant-cache will store (a cacheable
-- miss: kong.ctx.shared.kta_cache_capture holds its max_entry_bytes), it keeps the response body
-- as it passes and, at the end, writes for the log phases: the first 64 KiB to
-- kong.ctx.shared.kta_capture_answer as `all;<body>` or `cut;<prefix>` (lib/capture/recorder.ts,
-- plugins/tenant-auth/objects.ts), and for the cache the body up to its limit to
-- kong.ctx.shared.kta_cache_answer as `all;<body>`, `b64;<base64>` (bytes that are not ASCII
-- travel to the plugin server as base64, whole) or `cut;` (longer than the limit; not stored)
-- (plugins/tenant-cache/capture.ts: the cache's store without Kong's buffered proxying).
-- Every other request returns at once. It never changes the body: streams stay streams.
return function()
  local shared = kong.ctx.shared
  local cache_max = tonumber(shared.kta_cache_capture)
  local answer = shared.kta_capture ~= nil or shared.kta_objects ~= nil
  if not answer and not cache_max then return end
  local c = ngx.ctx
  if c.cap_done then return end
  local chunk, eof = ngx.arg[1] or '', ngx.arg[2]
  local max = 65536
  if cache_max and cache_max > max then max = cache_max end
  local parts = c.cap_parts
  if not parts then
    parts = {}
    c.cap_parts = parts
    c.cap_len = 0
  end
  local room = max - c.cap_len
  if room > 0 and #chunk > 0 then
    local piece = string.sub(chunk, 1, room)
    parts[#parts + 1] = piece
    c.cap_len = c.cap_len + #piece
  end
  if #chunk > room then c.cap_cut = true end
  if not eof then return end
  c.cap_done = true
  local body = table.concat(parts)
  if answer then
    local cut = c.cap_cut or #body > 65536
    shared.kta_capture_answer = (cut and 'cut;' or 'all;') .. string.sub(body, 1, 65536)
  end
  if cache_max then
    if c.cap_cut or #body > cache_max then
      shared.kta_cache_answer = 'cut;'
    elseif string.find(body, '[\128-\255]') then
      shared.kta_cache_answer = 'b64;' .. ngx.encode_base64(body)
    else
      shared.kta_cache_answer = 'all;' .. body
    end
  end
end
