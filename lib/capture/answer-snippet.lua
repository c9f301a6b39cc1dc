-- capture answer reader (issue 23): Kong's bundled post-function runs this in body_filter
-- (sandboxed, no require). Only for a request tenant-auth drafted for capture (its tenant opted
-- in: kong.ctx.shared.kta_capture is set), or whose answer makes a stored object it records
-- (kong.ctx.shared.kta_objects, `store: scoped`), it keeps the first 64 KiB of the response body
-- and, at the end, writes them to kong.ctx.shared.kta_capture_answer as `all;<body>` or
-- `cut;<prefix>` for the log phases (lib/capture/recorder.ts, plugins/tenant-auth/objects.ts).
-- Every other request returns at once. It never changes the body: streams stay streams.
return function()
  if kong.ctx.shared.kta_capture == nil and kong.ctx.shared.kta_objects == nil then return end
  local c = ngx.ctx
  if c.cap_done then return end
  local chunk, eof = ngx.arg[1] or '', ngx.arg[2]
  local max = 65536
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
  kong.ctx.shared.kta_capture_answer = (c.cap_cut and 'cut;' or 'all;') .. table.concat(parts)
end
