/**
 * The trace snippet (lib/tracing/span-snippet.lua): kong.yml ships the file verbatim to Kong's
 * pre-function in `log` (before the opentelemetry plugin's log exports the spans), and under
 * LuaJIT (what Kong runs) with the sandbox's environment it does what its header says: the
 * request's root span gets the tenant and the chain's decisions from the serializer, ctx.shared
 * and the response headers, values cut to a safe alphabet, the query string dropped from
 * http.url; with tracing off or the trace not sampled it touches nothing. End to end on the
 * real Kong with a real OTLP receiver: test/plugins/tracing.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'lib/tracing/span-snippet.lua'), 'utf8');

test('kong.yml ships the snippet verbatim in pre-function log, with the opentelemetry plugin on the same route', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; route?: string; config?: { log?: string[] } }>;
  };
  const pre = doc.plugins.filter((p) => p.name === 'pre-function');
  t.is(pre.length, 1);
  // Then the log facts of the PDK batch (test/unit/pdk-batch-snippet.test.ts).
  t.is(pre[0]?.config?.log?.[0], SNIPPET);
  t.is(pre[0]?.config?.log?.length, 2);
  const otel = doc.plugins.filter((p) => p.name === 'opentelemetry');
  t.is(otel.length, 1);
  t.is(otel[0]?.route, pre[0]?.route);
});

// The sandbox's environment (kong/tools/kong-lua-sandbox.lua: no require, no io) and a kong
// whose root span records its attributes; the snippet's 0.2.0-style function is called once.
const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local case = dofile(arg[2])
local span = case.span
if span then
  span.attributes = span.attributes or {}
  function span:set_attribute(k, v) self.attributes[k] = v end
end
local kong = {
  tracing = { get_root_span = function() return span end },
  log = { serialize = function() return case.serialized end },
  response = { get_headers = function() return case.headers or {} end },
  ctx = { shared = case.shared or {} },
}
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, math = math, table = table, kong = kong, ngx = {},
}
local f = assert(loadstring(code, '=pre-function'))
setfenv(f, env)
local fn = f()
assert(type(fn) == 'function', 'the snippet returns its log function')
fn()
local out = {}
for k, v in pairs(span and span.attributes or {}) do
  out[#out + 1] = k .. '=' .. tostring(v) .. ':' .. type(v)
end
table.sort(out)
io.write(table.concat(out, '\\n'))
`;

/** Runs the snippet on a case given as Lua source (`return { span = ..., ... }`). */
function run(caseLua: string): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'trace-snippet-'));
  const files = { snippet: SNIPPET, case: caseLua, driver: DRIVER };
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  const out = execFileSync(
    'luajit',
    [path.join(dir, 'driver'), path.join(dir, 'snippet'), path.join(dir, 'case')],
    { encoding: 'utf8' },
  );
  return out === '' ? [] : out.split('\n');
}

const URL = `['http.url'] = 'http://gw/v1/chat/completions?apikey=k1&x=2'`;

test('LuaJIT: a proxied chat request gets the tenant and every decision', (t) => {
  const attrs = run(`return {
    span = { should_sample = true, attributes = { ${URL} } },
    serialized = {
      tenant = { id = 'acme', plan = 'pro', source = 'consumer',
        model = { requested = 'gpt-4o', served = 'gpt-4o', decision = 'as_asked' } },
      retrieval = { status = 'injected', chunks = 3, sources = { 'secret-doc.pdf' } },
      llm_usage = { prompt_tokens = 21, completion_tokens = 18, total_tokens = 39, cached_tokens = 0 },
      request = { headers = { authorization = 'Bearer k1' } },
    },
    headers = {
      ['x-budget-state'] = 'fallback', ['x-queue-wait-ms'] = '125', ['x-service-class'] = 'urgent',
      ['x-circuit-breaker-fallback'] = 'backup', ['x-circuit-breaker-fallback-model'] = 'gpt-4o-mini',
      ['x-cache-match'] = 'semantic',
    },
    shared = { tenant_cache_status = 'miss', tenant_context = '{"persona":"secret"}' },
  }`);
  t.deepEqual(attrs, [
    'ai.model.decision=as_asked:string',
    'ai.model.requested=gpt-4o:string',
    'ai.model.served=gpt-4o-mini:string',
    'ai.usage.cached_tokens=0:number',
    'ai.usage.completion_tokens=18:number',
    'ai.usage.prompt_tokens=21:number',
    'breaker.fallback=backup:string',
    'budget.decision=fallback:string',
    'cache.match=semantic:string',
    'cache.status=miss:string',
    'http.url=http://gw/v1/chat/completions:string',
    'queue.class=urgent:string',
    'queue.wait_ms=125:number',
    'retrieval.chunks=3:number',
    'retrieval.status=injected:string',
    'tenant.id=acme:string',
    'tenant.plan=pro:string',
    'tenant.source=consumer:string',
  ]);
});

test('LuaJIT: a refusal before tenant-auth (no tenant yet) keeps only what is known', (t) => {
  const attrs = run(`return {
    span = { should_sample = true, attributes = { ['http.url'] = 'http://gw/v1/models' } },
    serialized = { request = { headers = { apikey = 'k1' } } },
    headers = { ['x-circuit-breaker-state'] = 'half-open' },
  }`);
  t.deepEqual(attrs, ['breaker.state=half-open:string', 'http.url=http://gw/v1/models:string']);
});

test('LuaJIT: values from the client are cut to names and counts', (t) => {
  const long = 'm'.repeat(300);
  const attrs = run(`return {
    span = { should_sample = true },
    serialized = { tenant = { id = 'acme', model = {
      requested = 'gpt-4o" my prompt; DROP', served = '${long}' } } },
    headers = { ['x-queue-wait-ms'] = '12ms', ['x-budget-state'] = { 'ok', 'exhausted' } },
  }`);
  t.deepEqual(attrs, [
    `ai.model.requested=gpt-4omypromptDROP:string`,
    `ai.model.served=${'m'.repeat(128)}:string`,
    'budget.decision=ok:string',
    'tenant.id=acme:string',
  ]);
});

test('LuaJIT: a trace not sampled, or tracing off, is left alone', (t) => {
  const serialized = `serialized = { tenant = { id = 'acme', plan = 'pro' } }`;
  t.deepEqual(
    run(`return { span = { should_sample = false, attributes = { ${URL} } }, ${serialized} }`),
    [`http.url=http://gw/v1/chat/completions?apikey=k1&x=2:string`],
  );
  // kong.conf tracing_instrumentations = off: the noop tracer has no root span.
  t.deepEqual(run(`return { ${serialized} }`), []);
});
