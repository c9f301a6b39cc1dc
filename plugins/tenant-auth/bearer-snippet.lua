-- Bearer keys for key-auth: Kong's bundled pre-function runs this in access (sandboxed, no
-- require), before key-auth (priority 1250). The OpenAI SDKs send their api_key as
-- `Authorization: Bearer <key>`; key-auth reads only its key_names (apikey, x-api-key). A Bearer
-- token that is not a JWT (tenant-auth verifies those itself) becomes the `apikey` header and
-- Authorization is removed, so key-auth finds the consumer and the key never goes upstream.
-- Two different keys in one request are refused (401), never chosen from.
return function()
  local h = kong.request.get_headers()
  local keys, seen = {}, {}
  local function add(v)
    if type(v) == 'table' then
      for _, x in ipairs(v) do add(x) end
    elseif type(v) == 'string' and not seen[v] then
      seen[v] = true
      keys[#keys + 1] = v
    end
  end
  local bearer = false
  local auth = h['authorization']
  for _, a in ipairs(type(auth) == 'table' and auth or { auth }) do
    local token = string.match(a, '^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$')
    -- A JWT: three base64url segments, the first a JSON header ('{"' encodes as eyJ).
    if token and not string.match(token, '^eyJ[%w_-]*%.[%w_-]+%.[%w_-]*$') then
      bearer = true
      add(token)
    end
  end
  add(h['apikey'])
  add(h['x-api-key'])
  if #keys > 1 then
    return kong.response.exit(401, { error = {
      message = 'Conflicting credentials: the request carries more than one API key '
        .. '(Authorization: Bearer, apikey, x-api-key); send one.',
      type = 'authentication_error', code = 'conflicting_credentials', param = ngx.null,
      request_id = ngx.var.kong_request_id,
    } }, { ['WWW-Authenticate'] = 'Key' })
  end
  if bearer then
    kong.service.request.set_header('apikey', keys[1])
    kong.service.request.clear_header('authorization')
    kong.service.request.clear_header('x-api-key')
  end
end
