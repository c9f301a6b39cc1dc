/**
 * The Lua script loader (lib/redis/lua-script.ts): `--- @include` inlined once, nested
 * includes relative to the including file, `<includes>/…` from any directory, and every way a
 * script can be wrong refused when it is loaded (missing include, cycle, double include, a
 * key beyond the count in its name, an include reading KEYS or ARGV, a misspelt directive).
 * The scripts are written to a fresh temporary directory per test; the product's own scripts
 * are then resolved and compiled by a real Lua VM (wasmoon).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { LuaFactory } from 'wasmoon';
import type { RedisClient } from '../../lib/redis/client';
import {
  loadScript,
  LuaScriptError,
  runScript,
  SHARED_INCLUDES_DIR,
} from '../../lib/redis/lua-script';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { productScripts } from '../fixtures/redis/product-scripts';
import { tokenBucketScript } from '../fixtures/redis/token-bucket';

/** A fresh directory holding `files` (path -> text), removed after the test. */
function scripts(t: ExecutionContext, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'lua-loader-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

function count(text: string, part: string): number {
  return text.split(part).length - 1;
}

test('an include is inlined in place of its directive, and the SHA1 is of the result', (t) => {
  const dir = scripts(t, {
    'op-1.lua': '-- op\n--- @include "includes/clock"\nreturn clock(KEYS[1])\n',
    'includes/clock.lua': 'local function clock(k)\n  return k\nend\n',
  });
  const s = loadScript('op-1', dir);
  t.is(s.source, '-- op\nlocal function clock(k)\n  return k\nend\nreturn clock(KEYS[1])\n');
  t.is(s.sha1, createHash('sha1').update(s.source).digest('hex'));
  t.deepEqual(s.includes, ['includes/clock.lua']);
  t.is(s.numberOfKeys, 1);
  // Positive control: the same name in another directory is another script.
  const other = scripts(t, { 'op-1.lua': 'return KEYS[1]\n' });
  t.is(loadScript('op-1', other).source, 'return KEYS[1]\n');
});

test('nested includes resolve from the including file, and each is inlined once', (t) => {
  const dir = scripts(t, {
    'op-2.lua': [
      '--- @include "inc/time"',
      '--- @include "inc/bucket.lua"',
      'return { KEYS[1], KEYS[2] }',
      '',
    ].join('\n'),
    // bucket includes time again, relative to inc/: already inlined above, so nothing is added.
    'inc/bucket.lua':
      '--- @include "time"\n--- @include "deep/level"\nlocal function bucket() end\n',
    'inc/time.lua': 'local function now() end\n',
    'inc/deep/level.lua': 'local function level() end\n',
  });
  const s = loadScript('op-2', dir);
  t.is(count(s.source, 'local function now()'), 1);
  t.is(count(s.source, '@include'), 0);
  // Definitions come before their users: time, then bucket's own include, then bucket.
  const at = (part: string) => s.source.indexOf(part);
  t.true(at('function now') < at('function level'));
  t.true(at('function level') < at('function bucket'));
  t.true(at('function bucket') < at('return {'));
  t.deepEqual(s.includes, ['inc/time.lua', 'inc/deep/level.lua', 'inc/bucket.lua']);
});

test('an unknown include is an error at load time naming the file and line', (t) => {
  const dir = scripts(t, {
    'op-1.lua': 'local x = 1\n--- @include "includes/nowhere"\nreturn KEYS[1]\n',
  });
  const err = t.throws(() => loadScript('op-1', dir), { instanceOf: LuaScriptError });
  t.regex(err?.message ?? '', /op-1\.lua:2: include not found: .*includes\/nowhere\.lua/);
  // A missing shared include too.
  const shared = scripts(t, { 'op-1.lua': '--- @include "<includes>/nowhere"\nreturn KEYS[1]\n' });
  t.throws(() => loadScript('op-1', shared), { message: /include not found/ });
});

test('an include cycle is an error, also a file including itself', (t) => {
  const dir = scripts(t, {
    'op-1.lua': '--- @include "inc/a"\nreturn KEYS[1]\n',
    'inc/a.lua': '--- @include "b"\nlocal function a() end\n',
    'inc/b.lua': '--- @include "a"\nlocal function b() end\n',
    'self-1.lua': '--- @include "self-1"\nreturn KEYS[1]\n',
  });
  const err = t.throws(() => loadScript('op-1', dir), { instanceOf: LuaScriptError });
  t.regex(err?.message ?? '', /include cycle: .*inc\/a\.lua -> .*inc\/b\.lua -> .*inc\/a\.lua/);
  t.throws(() => loadScript('self-1', dir), { message: /include cycle/ });
});

test('the same include twice in one file is an error', (t) => {
  const dir = scripts(t, {
    'op-1.lua': '--- @include "inc/a"\n--- @include "inc/a.lua"\nreturn KEYS[1]\n',
    'inc/a.lua': 'local function a() end\n',
  });
  t.throws(() => loadScript('op-1', dir), {
    message: /op-1\.lua:2: "inc\/a\.lua" is included twice/,
  });
});

test('the key count comes from the name and bounds the KEYS the script names', (t) => {
  const dir = scripts(t, {
    'nocount.lua': 'return 1\n',
    'op-1.lua': '--[[ KEYS[2] is only named in a comment ]]\nreturn KEYS[2]\n',
    'fine-2.lua': '--[[\n  KEYS[1] a\n  KEYS[2] b\n]]\nreturn { KEYS[1], KEYS[2] }\n',
  });
  t.throws(() => loadScript('nocount', dir), { message: /must look like <name>-<nkeys>/ });
  t.throws(() => loadScript('op-1', dir), { message: /uses KEYS\[2\] but its name says 1 key/ });
  t.is(loadScript('fine-2', dir).numberOfKeys, 2);
});

test('runScript checks the key count on every call, before reaching Redis', async (t) => {
  const dir = scripts(t, { 'op-2.lua': 'return { KEYS[1], KEYS[2] }\n' });
  const s = loadScript('op-2', dir);
  const sent: unknown[] = [];
  const client = {
    evalSha: (sha: string, options: unknown) => {
      sent.push([sha, options]);
      return Promise.resolve('ok');
    },
  } as unknown as RedisClient;
  const keys = createKeyspace('kta');
  const acme = parseTenantId('acme');
  const key = keys.concurrencyLeases(acme);
  await t.throwsAsync(runScript(client, s, [key], []), { message: /op-2 takes 2 key\(s\), got 1/ });
  t.is(sent.length, 0);
  // Positive control: with two keys the call goes out.
  t.is(await runScript(client, s, [key, key], [1]), 'ok');
  t.deepEqual(sent, [[s.sha1, { keys: [key, key], arguments: ['1'] }]]);
});

test('an include takes keys and arguments as parameters, never KEYS or ARGV', (t) => {
  const dir = scripts(t, {
    'op-1.lua': '--- @include "inc/bad"\nreturn KEYS[1]\n',
    'inc/bad.lua': 'local function f() return ARGV[1] end\n',
    'ok-1.lua': '--- @include "inc/good"\nreturn f(KEYS[1])\n',
    'inc/good.lua':
      '-- reads KEYS[1] only through its parameter\nlocal function f(key) return key end\n',
  });
  t.throws(() => loadScript('op-1', dir), { message: /only the script reads KEYS and ARGV/ });
  t.notThrows(() => loadScript('ok-1', dir));
});

test('a misspelt directive is an error, not a silent comment', (t) => {
  const dir = scripts(t, {
    'dashes-1.lua': '-- @include "inc/a"\nreturn KEYS[1]\n',
    'quotes-1.lua': "--- @include 'inc/a'\nreturn KEYS[1]\n",
    'inc/a.lua': 'local function a() end\n',
  });
  t.throws(() => loadScript('dashes-1', dir), { message: /write an include as --- @include/ });
  t.throws(() => loadScript('quotes-1', dir), { message: /write an include as --- @include/ });
});

test('<includes>/… names the shared includes from a script outside lib/redis/scripts', (t) => {
  const s = tokenBucketScript();
  const clock = readFileSync(join(SHARED_INCLUDES_DIR, 'server-time.lua'), 'utf8');
  const bucket = readFileSync(join(SHARED_INCLUDES_DIR, 'bucket.lua'), 'utf8');
  t.true(s.source.includes(clock.trimEnd()));
  t.true(s.source.includes(bucket.trimEnd()));
  t.is(count(s.source, '@include'), 0);
});

test('every product script resolves to Lua that compiles, each include defined once', async (t) => {
  const lua = await new LuaFactory().createEngine();
  t.teardown(() => lua.global.close());
  const scripts = productScripts();
  const names = scripts.map((s) => s.name);
  for (const n of [
    'fair-queue-acquire-8',
    'tenant-admit-3',
    'budget-reserve-4',
    'semantic-index-add-1',
  ])
    t.true(names.includes(n), n);
  t.false(names.some((n) => n.startsWith('includes')));
  for (const name of [...scripts, tokenBucketScript()]) {
    lua.global.set('src', name.source);
    // load() compiles without running: a broken splice is a syntax error here.
    const error: unknown = await lua.doString("local f, err = load(src); return err or ''");
    t.is(error, '', name.name);
    t.is(count(name.source, '@include'), 0, name.name);
    for (const m of name.source.matchAll(/^local function (\w+)/gm)) {
      t.is(count(name.source, `local function ${m[1] ?? ''}(`), 1, `${name.name}: ${m[1]}`);
    }
  }
  // Positive control: the compile check sees a broken script.
  lua.global.set('src', 'local function f(\nreturn 1');
  t.not(await lua.doString("local f, err = load(src); return err or ''"), '');
});
