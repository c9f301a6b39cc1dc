/**
 * The chain's one access phase, its Lua half (lib/pluginserver/pdk-batch.lua `chain` and
 * `unchain`, kong.yml's pre-function), under LuaJIT with the sandbox's environment and a stand-in
 * for what Kong 3.9.3 keeps in `ngx.ctx.plugins` while it collects the request's plugins
 * (kong/runloop/plugins_iterator.lua): the plugins Kong would run next, that the owner's
 * plugin-server socket serves and the caller names, are merged up to the first other plugin
 * with an access phase; their instances are claimed under their own plugin id; their access is
 * hidden for this request only. The Node half: test/unit/chain-access.test.ts; end to end on
 * the real Kong: every chain test (the exchange counts: bench/chain.ts).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadSnippet } from '../helpers/lua-sandbox';
import { ACCESS_IN_CHAIN } from '../../lib/pluginserver/chain-entry';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'lib/pluginserver/pdk-batch.lua'), 'utf8');

const FOLLOWERS = ACCESS_IN_CHAIN;

// arg[2]: the plugin list, "name:socket:phases:route" per plugin, comma separated (socket '-'
// for a bundled plugin, route the one its config is for, '*' global, '!' none). Prints what
// chain answered, which plugins have an access phase in the list Kong now iterates, the
// instance claims, and the plugin id after.
const DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local claims = {}
local list, combos = { [0] = 0 }, {}
for spec in string.gmatch(arg[2], '[^,]+') do
  local name, socket, phases, route = spec:match('([^:]+):([^:]+):([^:]+):([^:]+)')
  local h = { PRIORITY = 0, name = name }
  for ph in string.gmatch(phases, '[^+]+') do h[ph] = function() end end
  if socket ~= '-' then
    h.server_def = { socket = socket }
    h.instance_callbacks = { get_instance_id = function(plugin, cfg)
      if arg[4] == 'fail' and plugin.name == 'tenant-cache' then error('no server') end
      claims[#claims + 1] = plugin.name .. '@' .. tostring(ngx.ctx.plugin_id) .. '=' .. cfg.__plugin_id
      return #claims * 100
    end }
  end
  list[0] = list[0] + 1
  list[list[0]] = { name = name, handler = h }
  if route == '*' then combos[name] = { ['::'] = { __plugin_id = 'id-' .. name } }
  elseif route ~= '!' then combos[name] = { [route .. '::'] = { __plugin_id = 'id-' .. name } } end
end
local ws = { plugins = list, combos = combos }
local vault = {}
local kong = { ctx = { shared = {} }, vault = { update = function(c) vault[#vault + 1] = c.__plugin_id end } }
ngx = { ctx = { plugin_id = 'id-tenant-auth', route = { id = 'r1' },
  plugins = arg[3] ~= 'noplugins' and { ws = ws } or nil }, get_phase = function() return 'access' end }
${loadSnippet('pre-function', `kong = kong, ngx = ngx`)}
fn()
local names = {}
for n in string.gmatch(arg[5] or '', '[^,]+') do names[#names + 1] = n end
local logs = {}
for n in string.gmatch(arg[6] or '', '[^,]+') do logs[#logs + 1] = n end
local out = kong.ctx.shared.kta_pdk.chain('tenant-auth', names, logs)
local function phase_of(l, phase)
  local a = {}
  for i = 1, l[0] do if l[i].handler[phase] then a[#a + 1] = l[i].name end end
  return table.concat(a, ' ')
end
local function access_of(l) return phase_of(l, 'access') end
local now = ngx.ctx.plugins and ngx.ctx.plugins.ws.plugins or list
local res = out and table.concat((function() local s = {} for i, v in ipairs(out) do s[i] = tostring(v) end return s end)(), ' ') or 'nil'
io.write('chain: ', res, '\\n')
io.write('access now: ', access_of(now), '\\n')
io.write('access in the config list: ', access_of(list), '\\n')
io.write('claims: ', table.concat(claims, ' '), '\\n')
io.write('vault: ', table.concat(vault, ' '), '\\n')
io.write('plugin id after: ', ngx.ctx.plugin_id, '\\n')
io.write('log now: ', phase_of(now, 'log'), '\\n')
local quiet = {}
for n in pairs(ngx.ctx.kta_chain_logs or {}) do quiet[#quiet + 1] = n end
io.write('logs run by the owner: ', table.concat(quiet, ' '), '\\n')
if ngx.ctx.plugins then
  kong.ctx.shared.kta_pdk.unchain()
  io.write('after unchain: ', access_of(ngx.ctx.plugins.ws.plugins), '\\n')
  io.write('log after unchain: ', phase_of(ngx.ctx.plugins.ws.plugins, 'log'), '\\n')
  io.write('logs after unchain: ', tostring(ngx.ctx.kta_chain_logs), '\\n')
end
`;

function run(
  plugins: string[],
  o: { mode?: string; fail?: boolean; names?: string[]; logs?: string[] } = {},
) {
  const dir = mkdtempSync(path.join(tmpdir(), 'chain-merge-'));
  writeFileSync(path.join(dir, 'snippet.lua'), SNIPPET);
  writeFileSync(path.join(dir, 'driver.lua'), DRIVER);
  const out = execFileSync(
    'luajit',
    [
      path.join(dir, 'driver.lua'),
      path.join(dir, 'snippet.lua'),
      plugins.join(','),
      o.mode ?? '',
      o.fail ? 'fail' : '',
      (o.names ?? FOLLOWERS).join(','),
      (o.logs ?? []).join(','),
    ],
    { encoding: 'utf8' },
  );
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]),
  ) as Record<string, string>;
}

const S = '/run/chain.sock';
const CHAIN = [
  'pre-function:-:access:r1',
  'key-auth:-:access:r1',
  `tenant-auth:${S}:access+log:r1`,
  `tenant-ratelimit:${S}:access:r1`,
  `tenant-cache:${S}:access:r1`,
  `token-meter:${S}:access+log:r1`,
  `circuit-breaker:${S}:access:r1`,
  'post-function:-:access+body_filter:r1',
];

test('LuaJIT: the chain after its owner is merged, each instance claimed under its own plugin id', (t) => {
  const r = run(CHAIN);
  t.is(
    r.chain,
    'tenant-ratelimit 100 false tenant-cache 200 false token-meter 300 false circuit-breaker 400 false',
  );
  t.is(
    r['access now'],
    'pre-function key-auth tenant-auth post-function',
    'the merged access hidden',
  );
  t.is(
    r['access in the config list'],
    'pre-function key-auth tenant-auth tenant-ratelimit tenant-cache token-meter circuit-breaker post-function',
    "Kong's own list untouched (every other request)",
  );
  t.is(
    r.claims,
    'tenant-ratelimit@id-tenant-ratelimit=id-tenant-ratelimit tenant-cache@id-tenant-cache=id-tenant-cache ' +
      'token-meter@id-token-meter=id-token-meter circuit-breaker@id-circuit-breaker=id-circuit-breaker',
  );
  t.is(r.vault, 'id-tenant-ratelimit id-tenant-cache id-token-meter id-circuit-breaker');
  t.is(r['plugin id after'], 'id-tenant-auth', "the owner's plugin id back");
  t.is(
    r['after unchain'],
    'pre-function key-auth tenant-auth tenant-ratelimit tenant-cache token-meter circuit-breaker post-function',
  );
});

test('LuaJIT: merging stops at a foreign plugin with an access phase; one without is passed over', (t) => {
  const acl = [...CHAIN];
  acl.splice(5, 0, 'acl:-:access:r1');
  const r = run(acl);
  t.is(r.chain, 'tenant-ratelimit 100 false tenant-cache 200 false', 'nothing merged past acl');
  t.is(
    r['access now'],
    'pre-function key-auth tenant-auth acl token-meter circuit-breaker post-function',
  );
  const fileLog = [...CHAIN];
  fileLog.splice(5, 0, 'file-log:-:log:r1');
  t.is(
    run(fileLog).chain,
    'tenant-ratelimit 100 false tenant-cache 200 false token-meter 300 false circuit-breaker 400 false',
  );
});

test('LuaJIT: only plugins configured for this request, served by the same socket, and named', (t) => {
  const other = CHAIN.map((p) =>
    p.startsWith('tenant-cache') ? 'tenant-cache:/run/other.sock:access:r1' : p,
  );
  t.is(
    run(other).chain,
    'tenant-ratelimit 100 false',
    'a plugin of another process ends the merge',
  );
  const elsewhere = CHAIN.map((p) =>
    p.startsWith('tenant-cache') ? `tenant-cache:${S}:access:r2` : p,
  );
  t.is(
    run(elsewhere).chain,
    'tenant-ratelimit 100 false token-meter 200 false circuit-breaker 300 false',
    'a plugin configured on another route is not on this request',
  );
  const global = CHAIN.map((p) =>
    p.startsWith('tenant-cache') ? `tenant-cache:${S}:access:*` : p,
  );
  t.is(
    run(global).chain,
    'tenant-ratelimit 100 false tenant-cache 200 false token-meter 300 false circuit-breaker 400 false',
  );
  t.is(run(CHAIN, { names: ['tenant-ratelimit'] }).chain, 'tenant-ratelimit 100 false');
});

test('LuaJIT: nothing to merge, no ngx.ctx.plugins, or an instance that cannot be claimed: nil, nothing hidden', (t) => {
  const alone = run(
    CHAIN.filter((p) => !/^(tenant-ratelimit|tenant-cache|token-meter|circuit-breaker)/.test(p)),
  );
  t.is(alone.chain, 'nil');
  t.is(run(CHAIN, { mode: 'noplugins' }).chain, 'nil');
  const failed = run(CHAIN, { fail: true });
  t.is(failed.chain, 'nil');
  t.is(
    failed['access now'],
    'pre-function key-auth tenant-auth tenant-ratelimit tenant-cache token-meter circuit-breaker post-function',
  );
  t.is(failed['plugin id after'], 'id-tenant-auth');
});

test('LuaJIT: a merged plugin whose log the owner runs has its log hidden too, and the guard is told', (t) => {
  const r = run(CHAIN, { logs: ['token-meter', 'tenant-cache'] });
  t.is(
    r.chain,
    'tenant-ratelimit 100 false tenant-cache 200 false token-meter 300 true circuit-breaker 400 false',
    'tenant-cache has no log phase here: nothing to hide',
  );
  t.is(r['log now'], 'tenant-auth', "token-meter's log is not collected: the owner's log runs it");
  t.is(r['logs run by the owner'], 'token-meter');
  t.is(r['log after unchain'], 'tenant-auth token-meter', 'unchain gives it back to Kong');
  t.is(r['logs after unchain'], 'nil');
  // Not asked: Kong runs it, as before.
  const plain = run(CHAIN);
  t.is(plain['log now'], 'tenant-auth token-meter');
  t.is(plain['logs run by the owner'], '');
});
