/**
 * The Bearer snippet (plugins/tenant-auth/bearer-snippet.lua): kong.yml ships the file verbatim
 * to Kong's pre-function (access, before key-auth), and under LuaJIT (what Kong runs; Debian's
 * `luajit`) with the sandbox's environment it does what its header says: a non-JWT Bearer
 * token becomes `apikey` (Authorization and x-api-key removed), a JWT is left alone, two
 * different keys are refused with an OpenAI-style 401. Both gateways running it end to end:
 * test/parity/bearer-keys.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadSnippet } from '../helpers/lua-sandbox';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'plugins/tenant-auth/bearer-snippet.lua'), 'utf8');

test('kong.yml ships the snippet file verbatim in pre-function access, before key-auth', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; route?: string; config?: { access?: string[] } }>;
  };
  const pre = doc.plugins.filter((p) => p.name === 'pre-function');
  t.is(pre.length, 1);
  // Second: the PDK batch snippet (test/unit/pdk-batch.test.ts), which needs no order.
  t.is(pre[0]?.config?.access?.[0], SNIPPET);
  t.is(pre[0]?.config?.access?.length, 2);
  const keyAuth = doc.plugins.find((p) => p.name === 'key-auth');
  t.is(pre[0]?.route, keyAuth?.route, 'on the same route as key-auth');
});

// kong/tools/kong-lua-sandbox.lua's environment (the parts the snippet reaches) and a kong
// whose PDK calls are recorded; the snippet's 0.2.0-style function is called once.
const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local headers = dofile(arg[2])
local out = {}
local EXIT = {}
local kong = {
  request = { get_headers = function() return headers end },
  service = { request = {
    set_header = function(k, v) out[#out + 1] = 'set ' .. k .. '=' .. v end,
    clear_header = function(k) out[#out + 1] = 'clear ' .. k end,
  } },
  response = { exit = function(status, body, hs)
    out[#out + 1] = 'exit ' .. status .. ' ' .. body.error.code .. ' ' .. body.error.type
      .. ' ' .. tostring(body.error.param == ngx.null) .. ' ' .. hs['WWW-Authenticate']
      .. ' ' .. tostring(body.error.request_id)
    error(EXIT)
  end },
}
ngx = { null = {}, var = { kong_request_id = 'rid' } }
${loadSnippet('pre-function', `kong = kong, ngx = ngx`)}
assert(type(fn) == 'function', 'the snippet returns its access function')
local ok, err = pcall(fn)
if not ok and err ~= EXIT then error(err) end
io.write(table.concat(out, '; '))
`;

function run(headers: Record<string, string | string[]>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'bearer-snippet-'));
  const snippet = path.join(dir, 'snippet.lua');
  const data = path.join(dir, 'headers.lua');
  const driver = path.join(dir, 'driver.lua');
  writeFileSync(snippet, SNIPPET);
  const lua = (v: string | string[]): string =>
    Array.isArray(v) ? `{ ${v.map((x) => JSON.stringify(x)).join(', ')} }` : JSON.stringify(v);
  writeFileSync(
    data,
    `return { ${Object.entries(headers)
      .map(([k, v]) => `[${JSON.stringify(k)}] = ${lua(v)}`)
      .join(', ')} }`,
  );
  writeFileSync(driver, DRIVER);
  return execFileSync('luajit', [driver, snippet, data], { encoding: 'utf8' });
}

const CONVERTED = 'set apikey=k1; clear authorization; clear x-api-key';
const CONFLICT = 'exit 401 conflicting_credentials authentication_error true Key rid';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';

const cases: Array<[string, Record<string, string | string[]>, string]> = [
  ['Bearer key', { authorization: 'Bearer k1' }, CONVERTED],
  ['lower-case scheme, extra spaces', { authorization: '  bearer   k1  ' }, CONVERTED],
  ['Bearer and the same apikey', { authorization: 'Bearer k1', apikey: 'k1' }, CONVERTED],
  ['Bearer and another apikey', { authorization: 'Bearer k1', apikey: 'k2' }, CONFLICT],
  ['Bearer and another x-api-key', { authorization: 'Bearer k1', 'x-api-key': 'k2' }, CONFLICT],
  ['apikey and another x-api-key', { apikey: 'k1', 'x-api-key': 'k2' }, CONFLICT],
  ['apikey twice, different', { apikey: ['k1', 'k2'] }, CONFLICT],
  ['apikey alone', { apikey: 'k1' }, ''],
  ['apikey and the same x-api-key', { apikey: 'k1', 'x-api-key': 'k1' }, ''],
  ['a JWT', { authorization: `Bearer ${JWT}` }, ''],
  ['a JWT and an apikey', { authorization: `Bearer ${JWT}`, apikey: 'k1' }, ''],
  [
    'a dotted key that is no JWT',
    { authorization: 'Bearer a.b.c' },
    'set apikey=a.b.c; clear authorization; clear x-api-key',
  ],
  ['Basic', { authorization: 'Basic azE6' }, ''],
  ['Bearer without a token', { authorization: 'Bearer' }, ''],
  ['no credential', {}, ''],
];

for (const [name, headers, expected] of cases) {
  test(`LuaJIT: ${name}`, (t) => {
    t.is(run(headers), expected);
  });
}
