/**
 * The registry of `kong.ctx.shared` keys (lib/request/shared-keys.ts) is the whole truth: every
 * key the TypeScript and the Lua snippets use is in it, no key twice, each key's guard refuses
 * what is not its value (and a value of another version), and docs/architecture.md's table
 * "kong.ctx.shared, key by key" lists the same keys, versions, writers and readers.
 */
import test from 'ava';
import { readKeptAnswer } from '../../plugins/tenant-cache/capture';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { decodeCacheStatus } from '../../lib/cache/status';
import { decodeDraft } from '../../lib/capture/record';
import { decodeLogFacts } from '../../lib/pluginserver/log-facts';
import { SHARED_KEYS, type SharedKey } from '../../lib/request/shared-keys';
import { TENANT_CONTEXT_VERSION, decodeTenantContext } from '../../lib/tenant/context';
import {
  ESTIMATE_VERSION,
  decodeEstimate,
  encodeEstimate,
  estimateRequest,
} from '../../lib/tokens/estimate';
import { decodeUsage } from '../../lib/tokens/usage';
import { decodePending } from '../../plugins/tenant-cache/pending';
import { decodeRecord } from '../../plugins/tenant-ratelimit/state';
import { decodeMeterState } from '../../plugins/token-meter/state';

const ROOT = path.resolve(__dirname, '..', '..');
const entries = Object.entries(SHARED_KEYS) as Array<[string, SharedKey]>;
const names = new Set(entries.map(([, e]) => e.key));

function files(dir: string, ext: string[]): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p, ext));
    else if (ext.some((e) => name.endsWith(e))) out.push(p);
  }
  return out;
}

test('no key is declared twice', (t) => {
  t.is(names.size, entries.length);
});

test('every key the Lua snippets and kong.yml touch in kong.ctx.shared is declared', (t) => {
  const sources = [
    ...files(path.join(ROOT, 'lib'), ['.lua']),
    ...files(path.join(ROOT, 'plugins'), ['.lua']),
    path.join(ROOT, 'kong.yml'),
  ];
  const used = new Set<string>();
  for (const f of sources) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/\bctx\.shared\.([a-z_][a-z0-9_]*)/g)) used.add(m[1] as string);
    // `local shared = kong.ctx.shared` … `shared.tenant_context`
    for (const m of text.matchAll(/\bshared\.([a-z_][a-z0-9_]*)\b/g)) used.add(m[1] as string);
  }
  const unknown = [...used].filter((k) => !names.has(k) && !['get', 'set'].includes(k));
  t.deepEqual(unknown, []);
  t.true(used.has('tenant_context') && used.has('llm_usage'), 'the scan finds the keys it should');
});

test('the TypeScript names every key through its declared constant, never a literal', (t) => {
  const literal: string[] = [];
  for (const f of [
    ...files(path.join(ROOT, 'lib'), ['.ts']),
    ...files(path.join(ROOT, 'plugins'), ['.ts']),
  ]) {
    if (f.endsWith('shared-keys.ts')) continue;
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/ctx\.shared\.(?:get|set)\(\s*(['"`])/g))
      literal.push(`${f}: ${m[0]}`);
    for (const k of names) {
      if (new RegExp(`=\\s*['"]${k}['"]`).test(text)) literal.push(`${f}: '${k}' assigned`);
    }
  }
  t.deepEqual(literal, []);
});

const GARBAGE: unknown[] = [undefined, null, '', 'garbage', '{}', '[]', 42, {}, '{"v":99}'];

/** Each key's guard; the two without one say why. */
const GUARDS: Record<keyof typeof SHARED_KEYS, ((raw: unknown) => unknown) | string> = {
  tenantContext: decodeTenantContext,
  tokenEstimate: decodeEstimate,
  ratelimitRecord: decodeRecord,
  cacheStatus: decodeCacheStatus,
  cachePending: decodePending,
  meterState: decodeMeterState,
  usage: decodeUsage,
  transformUsage: decodeUsage,
  captureFlag: decodeDraft,
  captureAnswer:
    'a string of the answer, parsed by readAnswer (lib/capture/record.ts), whatever it holds',
  objectCapture:
    'a flag tenant-auth sets for the post-function (any value: keep the answer); no plugin reads it',
  cacheCapture:
    'a byte limit tenant-cache sets for the post-function (any value: keep the answer); no plugin reads it',
  cacheAnswer: readKeptAnswer,
  logFacts: decodeLogFacts,
  logSaved: 'a Lua table the log snippet writes and the batch snippet reads; no plugin decodes it',
  pdkBatch: 'a Lua table of functions the snippet installs; no plugin decodes it',
  mergedSpans:
    'a string tenant-auth writes for the span snippet, which parses it in Lua (lib/tracing/span-snippet.lua) and ignores what does not match; no plugin reads it',
};

for (const [name, entry] of entries) {
  test(`${entry.key}: its guard refuses what is not its value`, (t) => {
    const guard = GUARDS[name as keyof typeof SHARED_KEYS];
    if (typeof guard === 'string') {
      t.true(guard.length > 20, 'the reason there is no guard is written down');
      return;
    }
    for (const raw of GARBAGE) {
      let out: unknown;
      try {
        out = guard(raw);
      } catch {
        out = undefined; // the TenantContext fails closed: a throw
      }
      t.true(out === undefined || out === null, `${entry.key} took ${JSON.stringify(raw)}`);
    }
  });
}

test('the versions the guards check are the registry’s', (t) => {
  t.is(TENANT_CONTEXT_VERSION, SHARED_KEYS.tenantContext.version);
  t.is(ESTIMATE_VERSION, SHARED_KEYS.tokenEstimate.version);
  const good = encodeEstimate(
    estimateRequest({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  );
  t.truthy(decodeEstimate(good));
  const next = JSON.stringify({ ...(JSON.parse(good) as object), v: ESTIMATE_VERSION + 1 });
  t.is(decodeEstimate(next), undefined, 'a value of another version is refused');
  t.is(decodeUsage('v=2;prompt=1;completion=1;total=2;cached=0;model=m;from=json'), undefined);
  t.truthy(decodeUsage('v=1;prompt=1;completion=1;total=2;cached=0;model=m;from=json'));
});

/** The table docs/architecture.md carries, as the registry says it. */
function sharedKeysTable(): string[] {
  return [
    '| key | version | written by | read by | what |',
    '| --- | --- | --- | --- | --- |',
    ...entries.map(
      ([, e]) =>
        `| \`${e.key}\` | ${e.version ?? '—'} | ${e.writers.join(', ')} | ${e.readers.join(', ')} | ${e.what} |`,
    ),
  ];
}

test('docs/architecture.md lists every key with its version, writers and readers', (t) => {
  const doc = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const at = doc.indexOf('**kong.ctx.shared, key by key**');
  t.true(at >= 0, 'the table has its heading');
  const rows = doc
    .slice(at)
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .slice(2, 2 + entries.length)
    .map((l) =>
      l
        .split('|')
        .map((c) => c.trim())
        .filter(Boolean),
    );
  const want = sharedKeysTable()
    .slice(2)
    .map((l) =>
      l
        .split('|')
        .map((c) => c.trim())
        .filter(Boolean),
    );
  t.deepEqual(rows, want);
});
