/**
 * token-meter's transform guard (plugins/token-meter/transform-guard.lua, kong.yml's
 * post-function access, after the chain guard): on a request Kong's ai-request-transformer
 * rewrote, the body the upstream receives gets token-meter's reserved bound, choices, model and
 * stream again; every other request is left alone. Run under LuaJIT (what Kong runs) with the
 * sandbox's environment and a stand-in for the three PDK calls it makes. End to end on the real
 * Kong with ai-request-transformer on the route: test/plugins/kong-ai-proxy.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSnippet } from '../helpers/lua-sandbox';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'plugins/token-meter/transform-guard.lua'), 'utf8');

// The body crosses as JSON both ways: a tiny encoder/decoder stands in for Kong's cjson
// (kong.request.get_body / kong.service.request.set_body), through luajit's loadstring.
const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local input = assert(io.open(arg[2])):read('*a')
local function decode(s)
  -- JSON -> Lua source: objects and arrays become tables; good enough for the cases' bodies.
  local lua = s:gsub('%[', '{'):gsub('%]', '}'):gsub('"([%w_]+)"%s*:', '["%1"]=')
  lua = lua:gsub('null', 'nil')
  return assert(loadstring('return ' .. lua))()
end
local function encode(v)
  local t = type(v)
  if t == 'table' then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if #v > 0 and #keys == #v then
      local parts = {}
      for i = 1, #v do parts[i] = encode(v[i]) end
      return '[' .. table.concat(parts, ',') .. ']'
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = string.format('%q', k) .. ':' .. encode(v[k]) end
    return '{' .. table.concat(parts, ',') .. '}'
  elseif t == 'string' then return string.format('%q', v)
  else return tostring(v) end
end
local case = decode(input)
local out = {}
local EXIT = {}
local log = { [0] = 0 }
for _, name in ipairs(case.log or {}) do
  log[log[0] + 1] = { name = name }
  log[log[0] + 2] = case.provider and { model = { provider = case.provider } } or {}
  log[0] = log[0] + 2
end
local kong = {
  ctx = { shared = { token_meter = case.state } },
  request = { get_body = function(mime)
    assert(mime == 'application/json')
    if case.body == 'not json' then return nil, 'invalid json body' end
    return case.body
  end },
  service = { request = { set_header = function(k, v)
    out[#out + 1] = 'header ' .. k .. '=' .. v
  end, set_body = function(b, mime)
    assert(mime == 'application/json')
    out[#out + 1] = 'set ' .. encode(b)
  end } },
  response = { exit = function(status, body)
    out[#out + 1] = 'exit ' .. status .. ' ' .. body.error.code .. ' ' .. body.error.request_id
    error(EXIT)
  end },
  log = { warn = function() end },
}
local ai = nil
if case.transformed then
  ai = { ['ai-request-transformer-transform-request'] = {
    transformed = true,
    llm_prompt_tokens_count = case.tp,
    llm_completion_tokens_count = case.tc,
    model = case.tmodel and { name = case.tmodel, provider = 'openai' } or nil,
  } }
end
${loadSnippet(
  'post-function',
  `kong = kong,
  ngx = { var = { kong_request_id = 'rid' }, ctx = { plugins = { log = case.where == 'log' and log or { [0] = 0 }, header_filter = case.where ~= 'log' and log or { [0] = 0 } }, ai_namespaced_ctx = ai } }`,
)}
assert(type(fn) == 'function', 'the snippet returns its access function')
local ok, err = pcall(fn)
if not ok and err ~= EXIT then error(err) end
if kong.ctx.shared.kta_transform_usage then
  out[#out + 1] = 'usage ' .. kong.ctx.shared.kta_transform_usage
end
io.write(table.concat(out, '; '))
`;

interface Case {
  transformed?: boolean;
  /** Which of Kong's collected lists names the `log` plugins (header_filter by default: ai-proxy's). */
  where?: 'log' | 'header_filter';
  /** The transformer's own LLM call, as Kong counted it. */
  tp?: number;
  tc?: number;
  tmodel?: string;
  state?: string;
  body?: Record<string, unknown> | 'not json';
  log?: string[];
  /** The provider of the ai-proxy entry among `log` (its config, beside it in Kong's lists). */
  provider?: string;
}

function run(c: Case): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'transform-guard-'));
  writeFileSync(path.join(dir, 'snippet.lua'), SNIPPET);
  writeFileSync(path.join(dir, 'driver.lua'), DRIVER);
  writeFileSync(path.join(dir, 'case.json'), JSON.stringify(c));
  return execFileSync(
    'luajit',
    [path.join(dir, 'driver.lua'), path.join(dir, 'snippet.lua'), path.join(dir, 'case.json')],
    { encoding: 'utf8' },
  );
}

/** What token-meter writes (plugins/token-meter/state.ts), with the fields the guard reads. */
function meterState(o: { bound: number; n?: number; model?: string; stream?: boolean }): string {
  return JSON.stringify({
    v: 1,
    requestId: 'rid',
    tenant: 'acme',
    modelAsked: o.model ?? 'gpt-4o-mini',
    modelServed: o.model ?? 'gpt-4o-mini',
    stream: o.stream ?? false,
    maxTokensPerChoice: o.bound,
    n: o.n ?? 1,
  });
}

const MSG = [{ role: 'user', content: 'hi' }];

test('LuaJIT: a request no transformer touched is left alone, whatever its body', (t) => {
  t.is(run({ state: meterState({ bound: 64 }), body: { model: 'gpt-4o', messages: MSG } }), '');
});

test('LuaJIT: transformed, but token-meter did not meter it: left alone', (t) => {
  t.is(run({ transformed: true, body: { model: 'gpt-4o', messages: MSG } }), '');
});

test('LuaJIT: the bound the transformer dropped comes back', (t) => {
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 64 }),
      body: { model: 'gpt-4o-mini', messages: MSG },
    }),
    'set {"max_tokens":64,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini"}',
  );
});

test('LuaJIT: a raised bound, more choices, another model and a stream: all as reserved', (t) => {
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 64 }),
      body: {
        model: 'gpt-4o',
        messages: MSG,
        max_tokens: 100000,
        max_completion_tokens: 5000,
        n: 4,
        stream: true,
      },
    }),
    'set {"max_completion_tokens":64,"max_tokens":64,"messages":[{"content":"hi","role":"user"}],' +
      '"model":"gpt-4o-mini","n":1,"stream":false}',
  );
});

test('LuaJIT: a reserved stream keeps its usage request', (t) => {
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 32, stream: true }),
      body: { model: 'gpt-4o-mini', messages: MSG, stream: true, max_tokens: 16 },
    }),
    'set {"max_tokens":16,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o-mini",' +
      '"stream":true,"stream_options":{"include_usage":true}}',
  );
});

test('LuaJIT: within what was reserved: nothing rewritten', (t) => {
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 64, n: 2 }),
      body: { model: 'gpt-4o-mini', messages: MSG, max_tokens: 10, n: 2 },
    }),
    '',
  );
});

test('LuaJIT: a reasoning model gets max_completion_tokens, the Responses API max_output_tokens', (t) => {
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 64, model: 'o3-mini' }),
      body: { model: 'o3-mini', messages: MSG },
    }),
    'set {"max_completion_tokens":64,"messages":[{"content":"hi","role":"user"}],"model":"o3-mini"}',
  );
  t.is(
    run({
      transformed: true,
      state: meterState({ bound: 64 }),
      body: { model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 999 },
    }),
    'set {"input":"hi","max_output_tokens":64,"model":"gpt-4o-mini"}',
  );
});

test("LuaJIT: behind ai-proxy the provider's own field is bounded, its model left to ai-proxy", (t) => {
  const state = meterState({ bound: 48 });
  t.is(
    run({
      transformed: true,
      state,
      log: ['ai-proxy'],
      body: { contents: [{ role: 'user' }], generationConfig: { maxOutputTokens: 4096 } },
    }),
    'header Accept-Encoding=identity; ' +
      'set {"contents":[{"role":"user"}],"generationConfig":{"maxOutputTokens":48}}',
  );
  t.is(
    run({
      transformed: true,
      state,
      log: ['ai-proxy'],
      body: { inferenceConfig: {}, messages: MSG },
    }),
    'header Accept-Encoding=identity; ' +
      'set {"inferenceConfig":{"maxTokens":48},"messages":[{"content":"hi","role":"user"}]}',
  );
  t.is(
    run({
      transformed: true,
      state,
      log: ['ai-proxy'],
      body: { model: 'claude-x', messages: MSG },
    }),
    'header Accept-Encoding=identity; ' +
      'set {"max_tokens":48,"messages":[{"content":"hi","role":"user"}],"model":"claude-x"}',
  );
});

test('LuaJIT: a transformed body that is not JSON is refused 502, never sent unbounded', (t) => {
  t.is(
    run({ transformed: true, state: meterState({ bound: 64 }), body: 'not json' }),
    'exit 502 transformed_request_invalid rid',
  );
});

test('LuaJIT: the transformer’s own LLM usage is handed to token-meter, only for a metered request', (t) => {
  t.is(
    run({
      transformed: true,
      tp: 120,
      tc: 35,
      tmodel: 'gpt-4o{x}',
      state: meterState({ bound: 64, n: 1 }),
      body: { model: 'gpt-4o-mini', messages: MSG, max_tokens: 10 },
    }),
    'usage v=1;prompt=120;completion=35;total=155;cached=0;model=gpt-4ox;from=json',
  );
  t.is(
    run({
      transformed: true,
      tp: 120,
      tc: 35,
      tmodel: 'gpt-4o',
      body: { model: 'm', messages: MSG },
    }),
    '',
    'not metered: nothing to bill it to',
  );
  t.is(
    run({
      transformed: true,
      tp: 0,
      tc: 0,
      state: meterState({ bound: 64 }),
      body: { model: 'gpt-4o-mini', messages: MSG, max_tokens: 10 },
    }),
    '',
    'no usage counted: no line',
  );
});

test('LuaJIT: behind ai-proxy a metered request asks the provider for identity again; unmetered, or without ai-proxy, nothing', (t) => {
  t.is(
    run({
      log: ['ai-proxy'],
      state: meterState({ bound: 48 }),
      body: { model: 'gpt-4o-mini', messages: MSG },
    }),
    'header Accept-Encoding=identity',
    'not transformed: only the header',
  );
  t.is(run({ log: ['ai-proxy'], body: { model: 'm', messages: MSG } }), '', 'not metered');
  t.is(
    run({
      where: 'log',
      log: ['ai-proxy'],
      state: meterState({ bound: 48 }),
      body: { model: 'm' },
    }),
    'header Accept-Encoding=identity',
    'found in the log list too',
  );
  t.is(run({ state: meterState({ bound: 48 }), body: { model: 'm', messages: MSG } }), '');
});

test("LuaJIT: behind ai-proxy's huggingface driver every metered request gets the bound Kong's driver dropped", (t) => {
  const state = meterState({ bound: 48 });
  const hf = { log: ['ai-proxy'], provider: 'huggingface', state };
  // Kong 3.9.3 moves a chat's max_tokens to parameters.max_lenght (sic), which HF's chat API ignores.
  t.is(
    run({ ...hf, body: { model: 'm', messages: MSG, parameters: { max_lenght: 48 } } }),
    'header Accept-Encoding=identity; ' +
      'set {"max_tokens":48,"messages":[{"content":"hi","role":"user"}],"model":"m","parameters":{"max_lenght":48}}',
    'chat: max_tokens back',
  );
  t.is(
    run({ ...hf, body: { inputs: 'hi', parameters: { max_new_tokens: 4096 } } }),
    'header Accept-Encoding=identity; set {"inputs":"hi","parameters":{"max_new_tokens":48}}',
    'text generation: max_new_tokens lowered to the bound',
  );
  t.is(
    run({ ...hf, body: { model: 'm', messages: MSG, max_tokens: 20 } }),
    'header Accept-Encoding=identity',
    'within the bound: not rewritten',
  );
  t.is(
    run({ log: ['ai-proxy'], provider: 'huggingface', body: { model: 'm', messages: MSG } }),
    '',
    'not metered: left alone',
  );
  t.is(
    run({ log: ['ai-proxy'], provider: 'openai', state, body: { model: 'm', messages: MSG } }),
    'header Accept-Encoding=identity',
    'another provider, not transformed: only the header',
  );
});
