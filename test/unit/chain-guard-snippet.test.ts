/**
 * tenant-auth's chain guard (plugins/tenant-auth/chain-guard.lua): kong.yml ships the file
 * verbatim in post-function access, and under LuaJIT (what Kong runs) with the sandbox's
 * environment it refuses a request that no TenantContext reached and lets any other through.
 * End to end, with the co-hosted plugin server killed: test/plugins/chain-crash.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { loadSnippet } from '../helpers/lua-sandbox';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'plugins/tenant-auth/chain-guard.lua'), 'utf8');

test('kong.yml ships the guard verbatim in post-function access, then the transform guard, on the route tenant-auth guards', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; route?: string; config?: { access?: string[] } }>;
  };
  const post = doc.plugins.filter((p) => p.name === 'post-function');
  t.is(post.length, 1);
  t.deepEqual(post[0]?.config?.access, [
    SNIPPET,
    readFileSync(path.join(ROOT, 'plugins/token-meter/transform-guard.lua'), 'utf8'),
  ]);
  t.is(post[0]?.route, doc.plugins.find((p) => p.name === 'tenant-auth')?.route);
});

const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local shared = {}
if arg[2] ~= '' then shared.tenant_context = arg[2] end
if arg[4] ~= '' then shared.token_meter = arg[4] end
-- Kong's collected log-phase plugins of the request: pairs of plugin, config (index 0: size).
local log = { [0] = 0 }
for name in string.gmatch(arg[5], '[^,]+') do
  log[log[0] + 1] = { name = name }
  log[log[0] + 2] = {}
  log[0] = log[0] + 2
end
local out = {}
local EXIT = {}
local kong = {
  ctx = { shared = shared },
  request = { get_method = function() return arg[3] end },
  response = { exit = function(status, body, hs)
    out[#out + 1] = 'exit ' .. status .. ' ' .. body.error.type .. ' ' .. body.error.code
      .. ' ' .. tostring(body.error.request_id)
      .. ' ' .. hs['Retry-After']
    error(EXIT)
  end },
}
${loadSnippet(
  'post-function',
  `kong = kong,
  ngx = { var = { kong_request_id = 'rid' }, ctx = { plugins = { log = log },
    kta_chain_logs = arg[6] ~= '' and { [arg[6]] = true } or nil } }`,
)}
assert(type(fn) == 'function', 'the snippet returns its access function')
local ok, err = pcall(fn)
if not ok and err ~= EXIT then error(err) end
io.write(table.concat(out, '; '))
`;

function run(
  tenantContext: string,
  o: { method?: string; meterState?: string; logPlugins?: string[]; logRunByOwner?: string } = {},
): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'chain-guard-'));
  const snippet = path.join(dir, 'snippet.lua');
  const driver = path.join(dir, 'driver.lua');
  writeFileSync(snippet, SNIPPET);
  writeFileSync(driver, DRIVER);
  return execFileSync(
    'luajit',
    [
      driver,
      snippet,
      tenantContext,
      o.method ?? 'POST',
      o.meterState ?? '',
      (o.logPlugins ?? []).join(','),
      o.logRunByOwner ?? '',
    ],
    { encoding: 'utf8' },
  );
}

test('LuaJIT: no TenantContext: 503 tenant_unavailable with Retry-After', (t) => {
  t.is(run(''), 'exit 503 service_unavailable tenant_unavailable rid 1');
});

test('LuaJIT: a TenantContext: the request goes on', (t) => {
  t.is(run('{"request":"00","v":2}'), '');
});

const CTX = '{"request":"00","v":2}';

test('LuaJIT: a POST token-meter is on but did not meter (its server died): 503 metering_unavailable', (t) => {
  t.is(
    run(CTX, { logPlugins: ['tenant-auth', 'token-meter'] }),
    'exit 503 service_unavailable metering_unavailable rid 1',
  );
});

test('LuaJIT: metered, or not a POST, or no token-meter on the request: the request goes on', (t) => {
  t.is(run(CTX, { logPlugins: ['tenant-auth', 'token-meter'], meterState: '{"v":1}' }), '');
  t.is(run(CTX, { logPlugins: ['tenant-auth', 'token-meter'], method: 'GET' }), '');
  t.is(run(CTX, { logPlugins: ['tenant-auth'] }), '');
  t.is(run(CTX, {}), '');
});

test('LuaJIT: token-meter merged into the chain (its log run by tenant-auth’s, hidden from Kong’s list): still guarded', (t) => {
  t.is(
    run(CTX, { logPlugins: ['tenant-auth'], logRunByOwner: 'token-meter' }),
    'exit 503 service_unavailable metering_unavailable rid 1',
  );
  t.is(
    run(CTX, { logPlugins: ['tenant-auth'], logRunByOwner: 'token-meter', meterState: 'none' }),
    '',
  );
});
