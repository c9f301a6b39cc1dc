/**
 * The PDK batch snippet (lib/pluginserver/pdk-batch.lua): kong.yml ships it verbatim in the
 * pre-function's access, and under LuaJIT (what Kong runs) with the sandbox's environment its
 * `run` does what the calls sent one by one would: each in order, with its arguments (nils
 * included), one result per call ({} for nil, a raw body as base64), ctx.shared and ngx.var
 * through Kong's own special cases, and a Lua error for a name that is no PDK function. The
 * batching itself (which calls, when): test/unit/pluginserver-batch.test.ts; end to end on both
 * gateways: every test of the chain (kong.yml's pre-function is on its route).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadSnippet } from '../helpers/lua-sandbox';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'lib/pluginserver/pdk-batch.lua'), 'utf8');
const LOG_FACTS = readFileSync(path.join(ROOT, 'lib/pluginserver/pdk-log-facts.lua'), 'utf8');

test('kong.yml ships the snippet verbatim in the pre-function of the chain route', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; route?: string; config?: { access?: string[] } }>;
  };
  const pre = doc.plugins.find((p) => p.name === 'pre-function') as
    { route?: string; config?: { access?: string[]; log?: string[] } } | undefined;
  t.true(pre?.config?.access?.includes(SNIPPET));
  t.true(pre?.config?.log?.includes(LOG_FACTS), 'the log facts in its log phase');
  const auth = doc.plugins.find((p) => p.name === 'tenant-auth');
  t.is(pre?.route, auth?.route);
});

// A kong whose PDK calls are recorded, the sandbox's environment, and a driver printing what
// `run` returned (JSON-ish, sorted) and what the calls did, in order.
const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local calls = assert(loadstring('return ' .. arg[2]))()
local phase = arg[3] or 'access'
local log = {}
local shared = {}
local kong = {
  ctx = { shared = shared },
  request = {
    get_header = function(n)
      if n == 'boom' then error('no such thing') end
      log[#log + 1] = 'get_header ' .. n; return n == 'x-a' and 'A' or nil
    end,
    get_raw_body = function(max) log[#log + 1] = 'get_raw_body ' .. tostring(max); return 'b\\0dy' end,
  },
  response = {
    get_status = function() log[#log + 1] = 'get_status'; return phase == 'timer' and 0 or 200 end,
    get_source = function() return 'service' end,
    get_headers = function() return { ['x-up'] = 'U' } end,
    set_headers = function(h) log[#log + 1] = 'set_headers ' .. h['x-k']; end,
    exit = function(s, b, h) log[#log + 1] = 'exit ' .. s .. ' ' .. tostring(b) .. ' ' .. tostring(h and h.k) end,
  },
  service = { request = { set_raw_body = function(b) log[#log + 1] = 'set_raw_body ' .. b end } },
}
ngx = {
  get_phase = function() return phase end,
  ctx = {},
  var = { kong_request_id = 'rid' },
  encode_base64 = function(s) return '<b64:' .. s:gsub('%z', '0') .. '>' end,
}
${loadSnippet('pre-function', `kong = kong, ngx = ngx`)}
fn()
if arg[4] then
  -- the log facts snippet, run in the request's log phase before the timer
  local lf = assert(loadstring(assert(io.open(arg[4])):read('*a'), '=pre-function-log'))
  setfenv(lf, env)
  local was = phase
  phase = 'log'
  lf()()
  phase = was
  log = {}
end
local bridge = shared.kta_pdk
assert(type(bridge) == 'table' and type(bridge.run) == 'function', 'kta_pdk.run installed')
local ok, out = pcall(bridge.run, calls)
local res = {}
if ok then
  for i, r in ipairs(out) do
    local keys = {}
    for k, v in pairs(r) do keys[#keys + 1] = k .. '=' .. tostring(v) end
    table.sort(keys)
    res[i] = '{' .. table.concat(keys, ',') .. '}'
  end
else
  res[1] = 'error ' .. tostring(out):gsub('^.-: ', '')
end
io.write(table.concat(res, ' '), ' | ', table.concat(log, '; '), ' | shared.k=', tostring(shared.k))
`;

function run(calls: string, phase = 'access', logFacts = false): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pdk-batch-'));
  const snippet = path.join(dir, 'snippet.lua');
  const driver = path.join(dir, 'driver.lua');
  const facts = path.join(dir, 'facts.lua');
  writeFileSync(snippet, SNIPPET);
  writeFileSync(driver, DRIVER);
  writeFileSync(facts, LOG_FACTS);
  const args = [driver, snippet, calls, phase, ...(logFacts ? [facts] : [])];
  return execFileSync('luajit', args, { encoding: 'utf8' });
}

test('LuaJIT: reads in order, one result each, nil as {}', (t) => {
  t.is(
    run(
      `{ { 'kong.request.get_header', { 'x-a' }, 1 }, { 'kong.request.get_header', { 'x-b' }, 1 },` +
        ` { 'kong.nginx.get_var', { 'kong_request_id' }, 1 } }`,
    ),
    '{v=A} {} {v=rid} | get_header x-a; get_header x-b | shared.k=nil',
  );
});

test('LuaJIT: a raw body comes back as base64, bytes kept', (t) => {
  t.is(
    run(`{ { 'kong.request.get_raw_body', { 1024 }, 1 } }`),
    '{b=<b64:b0dy>} | get_raw_body 1024 | shared.k=nil',
  );
});

test('LuaJIT: writes run in order, ctx.shared through its table, nil arguments kept', (t) => {
  t.is(
    run(
      `{ { 'kong.ctx.shared.set', { 'k', 'v1' }, 2 }, { 'kong.response.set_headers', { { ['x-k'] = 'K' } }, 1 },` +
        ` { 'kong.service.request.set_raw_body', { 'new' }, 1 }, { 'kong.ctx.shared.get', { 'k' }, 1 },` +
        ` { 'kong.response.exit', { 403, nil, { k = 'h' } }, 3 } }`,
    ),
    '{} {} {} {v=v1} {} | set_headers K; set_raw_body new; exit 403 nil h | shared.k=v1',
  );
});

test('LuaJIT: a name that is no PDK function is a Lua error, after the calls before it ran', (t) => {
  const out = run(
    `{ { 'kong.response.set_headers', { { ['x-k'] = 'K' } }, 1 }, { 'kong.nope.get', {}, 0 } }`,
  );
  t.is(out, 'error kta_pdk: no PDK method kong.nope.get | set_headers K | shared.k=nil');
  t.regex(run(`{ { 'ngx.var', {}, 0 } }`), /^error kta_pdk: no PDK method ngx\.var/);
});

test('LuaJIT: a read fetched ahead that fails comes back as { e }; a call the plugin made raises', (t) => {
  t.regex(
    run(
      `{ { 'kong.request.get_header', { 'x-a' }, 1 }, { 'kong.request.get_header', { 'boom' }, 1, true } }`,
    ),
    /^\{v=A\} \{e=.*no such thing\} \| get_header x-a \|/,
  );
  t.regex(run(`{ { 'kong.request.get_header', { 'boom' }, 1 } }`), /^error .*no such thing/);
});

test('LuaJIT: in the log timer the response status and source come from the saved log facts', (t) => {
  const calls = `{ { 'kong.response.get_status', {}, 0 }, { 'kong.response.get_source', {}, 0 } }`;
  // The log facts snippet saved them in the request: no call in the timer (it would read 0).
  t.is(run(calls, 'timer', true), '{v=200} {v=service} |  | shared.k=nil');
  // Without the log facts: "not here" for each, never the timer's own status.
  t.is(run(calls, 'timer', false), '{x=true} {x=true} |  | shared.k=nil');
  // In access the same names are the PDK calls themselves.
  t.is(run(calls, 'access', false), '{v=200} {v=service} | get_status | shared.k=nil');
});

// The log facts snippet alone, in the request's log phase, with the ngx.ctx and ngx.var a given
// request leaves there; prints kong.ctx.shared.kta_log_facts sorted.
const FACTS_DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local ctx = assert(loadstring('return ' .. arg[2]))()
local var = assert(loadstring('return ' .. arg[3]))()
local shared = {}
local kong = {
  ctx = { shared = shared },
  response = {
    get_status = function() return 504 end,
    get_source = function() return 'error' end,
    get_headers = function() return { ['x-up'] = 'U' } end,
  },
}
local env = { tonumber = tonumber, kong = kong, ngx = { ctx = ctx, var = var } }
local f = assert(loadstring(code, '=pre-function-log'))
setfenv(f, env)
f()()
local keys = {}
for k, v in pairs(shared.kta_log_facts) do keys[#keys + 1] = k .. '=' .. type(v) .. ':' .. tostring(v) end
table.sort(keys)
io.write(table.concat(keys, ' '), ' | kta_log.status=', tostring(shared.kta_log.status))
`;

function facts(ctx: string, vars: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'pdk-log-facts-'));
  const snippet = path.join(dir, 'facts.lua');
  const driver = path.join(dir, 'driver.lua');
  writeFileSync(snippet, LOG_FACTS);
  writeFileSync(driver, FACTS_DRIVER);
  return execFileSync('luajit', [driver, snippet, ctx, vars], { encoding: 'utf8' });
}

test('LuaJIT: the log facts are what Kong 3.9.3 serializes for the fields the plugins record', (t) => {
  // kong/pdk/log.lua serialize(): request.id = request_id.get() (ngx.ctx.request_id, first set
  // from $kong_request_id), upstream_status = $upstream_status or ctx.buffered_status or "",
  // latencies.proxy = ctx.KONG_WAITING_TIME or -1, latencies.request = $request_time * 1000.
  t.is(
    facts(
      `{ KONG_WAITING_TIME = 7 }`,
      `{ kong_request_id = 'rid', upstream_status = '502, 504', request_time = '0.012' }`,
    ),
    'proxy_latency=number:7 request_id=string:rid request_latency=number:12 source=string:error' +
      ' status=number:504 upstream_status=string:502, 504 | kta_log.status=504',
  );
  // The id Kong already fixed for the request wins; a buffered response's status stands in for
  // the upstream's; no upstream tried: "" and -1, as the serializer says.
  t.is(
    facts(
      `{ request_id = 'ctx-id', buffered_status = 200 }`,
      `{ kong_request_id = 'var-id', request_time = '0.5' }`,
    ),
    'proxy_latency=number:-1 request_id=string:ctx-id request_latency=number:500 source=string:error' +
      ' status=number:504 upstream_status=number:200 | kta_log.status=504',
  );
  t.regex(facts(`{}`, `{ request_time = '0' }`), /request_id=string: .*upstream_status=string: \|/);
});
