/**
 * The capture answer snippet (lib/capture/answer-snippet.lua): kong.yml ships the file's text
 * in post-function body_filter after the usage snippet; for a request drafted for capture it
 * keeps the first 64 KiB of the body however it is cut into chunks (`all;` or `cut;`); for a
 * cacheable miss (tenant-cache's flag) the body up to the cache's limit, its bytes exact; and for
 * any other request it keeps nothing. LuaJIT (what Kong runs) and the harness's Lua VM agree.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { runBodyFilter } from '../../harness/post-function';
import { RequestState } from '../../harness/request-state';
import { CAPTURE_ANSWER_KEY, CAPTURE_FLAG_KEY } from '../../lib/capture/draft';
import { readAnswer } from '../../lib/capture/record';
import {
  CACHE_ANSWER_KEY,
  CACHE_CAPTURE_KEY,
  readKeptAnswer,
} from '../../plugins/tenant-cache/capture';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'lib/capture/answer-snippet.lua'), 'utf8');
const USAGE = readFileSync(path.join(ROOT, 'plugins/token-meter/usage-snippet.lua'), 'utf8');

const completion = JSON.stringify({
  id: 'c1',
  object: 'chat.completion',
  model: 'gpt-4o',
  choices: [{ index: 0, message: { role: 'assistant', content: 'forty-two' } }],
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
});
const big = 'x'.repeat(70_000);

function cut(body: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.slice(i, i + size));
  return out;
}

interface Case {
  name: string;
  captured: boolean;
  chunks: string[];
  expected: string | null;
}

const cases: Case[] = [
  ...[1, 13, 100000].map((size) => ({
    name: `a captured completion cut every ${size} bytes`,
    captured: true,
    chunks: cut(completion, size),
    expected: `all;${completion}`,
  })),
  {
    name: 'a captured body over 64 KiB keeps its first 64 KiB, marked cut',
    captured: true,
    chunks: cut(big, 4096),
    expected: `cut;${big.slice(0, 65536)}`,
  },
  {
    name: 'a request not drafted for capture keeps nothing',
    captured: false,
    chunks: cut(completion, 7),
    expected: null,
  },
];

test('kong.yml ships the snippet verbatim after the usage snippet', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; config?: { body_filter?: string[] } }>;
  };
  const pf = doc.plugins.filter((p) => p.name === 'post-function');
  t.deepEqual(pf[0]?.config?.body_filter, [USAGE, SNIPPET]);
});

/** A request as the harness's post-function sees it. */
function requestState(): RequestState {
  return new RequestState(
    `r-${Math.random()}`,
    Date.now(),
    'POST',
    '/v1/chat/completions',
    undefined,
    new Map(),
    Buffer.alloc(0),
    '127.0.0.1',
    1,
    8000,
    '1.1',
  );
}

async function runInHarness(c: Case): Promise<{ answer: string | null; errors: string[] }> {
  const st = requestState();
  if (c.captured) st.ctxShared.set(CAPTURE_FLAG_KEY, '1');
  for (const ch of c.chunks) await runBodyFilter('cap', [SNIPPET], st, Buffer.from(ch), false);
  await runBodyFilter('cap', [SNIPPET], st, Buffer.alloc(0), true);
  const v = st.ctxShared.get(CAPTURE_ANSWER_KEY);
  return { answer: typeof v === 'string' ? v : null, errors: st.stats.pdkErrors };
}

for (const c of cases) {
  test(`harness Lua VM: ${c.name}`, async (t) => {
    const r = await runInHarness(c);
    t.deepEqual(r.errors, []);
    t.is(r.answer, c.expected);
  });
  test(`LuaJIT: ${c.name}`, (t) => {
    const out = inLuaJit(
      c.chunks.map((x) => Buffer.from(x)),
      c.captured,
      null,
    );
    t.is(
      out.answer === null ? null : Buffer.from(out.answer, 'latin1').toString('utf8'),
      c.expected,
    );
    t.is(out.cache, '', 'nothing for the cache unless it asked');
  });
}

test('what the snippet keeps, the recorder reads as the answer', (t) => {
  t.is(readAnswer(completion).text, 'forty-two');
});

/**
 * The cache's share (plugins/tenant-cache/capture.ts): with `kta_cache_capture` set to a byte
 * limit, the body up to it in `kta_cache_answer`, its bytes exact whatever they are (ASCII as
 * is, anything else as base64), `cut;` past the limit; the capture's own answer unchanged.
 */
interface CacheCase {
  name: string;
  limit: number;
  captured: boolean;
  chunks: Buffer[];
  /** The bytes the store must read back, or 'cut'. */
  expected: Buffer | 'cut';
  /** kta_capture_answer when `captured`. */
  answer?: string;
}

const accented = Buffer.from(
  JSON.stringify({ model: 'gpt-4o', choices: [{ message: { content: 'Ça coûte 5 € 🙂' } }] }),
  'utf8',
);
const binary = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x41, 0xc3, 0x28]);
const large = 'y'.repeat(100_000);
const chunksOf = (b: Buffer, size: number): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
};

const cacheCases: CacheCase[] = [
  {
    name: 'an ASCII completion, as it passed',
    limit: 262144,
    captured: false,
    chunks: chunksOf(Buffer.from(completion), 13),
    expected: Buffer.from(completion),
  },
  {
    name: 'UTF-8 text, split inside its characters: the exact bytes',
    limit: 262144,
    captured: false,
    chunks: chunksOf(accented, 5),
    expected: accented,
  },
  {
    name: 'bytes that are no text at all (a gzip header, invalid UTF-8): the exact bytes',
    limit: 262144,
    captured: false,
    chunks: chunksOf(binary, 3),
    expected: binary,
  },
  {
    name: 'an answer longer than the limit: cut, never a prefix',
    limit: 1000,
    captured: false,
    chunks: chunksOf(Buffer.from(completion.repeat(10)), 700),
    expected: 'cut',
  },
  {
    name: "beside a capture: the cache keeps 100 KB, the capture's answer its first 64 KiB",
    limit: 262144,
    captured: true,
    chunks: chunksOf(Buffer.from(large), 4096),
    expected: Buffer.from(large),
    answer: `cut;${large.slice(0, 65536)}`,
  },
];

/**
 * LuaJIT (Kong's VM) running the snippet as post-function does: arg[3] '1' drafts the request for
 * capture, arg[4] is tenant-cache's limit ('' for none). Writes the cache's answer, NUL, then the
 * capture's answer (or NUL 'nil' for none).
 */
const LUAJIT_DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local chunks = dofile(arg[2])
local shared = {}
if arg[3] == '1' then shared.kta_capture = '1' end
if arg[4] ~= '' then shared.kta_cache_capture = arg[4] end
-- ngx.encode_base64, by coreutils' base64 (an oracle of its own, not the harness's Lua copy).
local function b64(s)
  local path = os.tmpname()
  local f = assert(io.open(path, 'wb')); f:write(s); f:close()
  local p = assert(io.popen('base64 -w0 ' .. path))
  local out = p:read('*a'); p:close(); os.remove(path)
  return out
end
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, math = math, table = table,
  ngx = { arg = {}, ctx = {}, encode_base64 = b64 },
  kong = { ctx = { shared = shared } },
}
local f = assert(loadstring(code, '=post-function'))
setfenv(f, env)
local fn = f()
for _, c in ipairs(chunks) do env.ngx.arg[1] = c; env.ngx.arg[2] = false; fn() end
env.ngx.arg[1] = ''; env.ngx.arg[2] = true; fn()
io.write((shared.kta_cache_answer or '') .. '\\0' .. (shared.kta_capture_answer or '\\0nil'))
`;

/** A Lua string literal holding `b`'s bytes exactly. */
const luaBytes = (b: Buffer) => `"${[...b].map((x) => `\\${x}`).join('')}"`;

/** The snippet in LuaJIT over `chunks`: the cache's answer ('' for none), the capture's (null for none). */
function inLuaJit(
  chunks: Buffer[],
  captured: boolean,
  cacheLimit: number | null,
): { cache: string; answer: string | null } {
  const dir = mkdtempSync(path.join(tmpdir(), 'answer-snippet-'));
  const [snippet, data, driver] = ['snippet.lua', 'chunks.lua', 'driver.lua'].map((f) =>
    path.join(dir, f),
  ) as [string, string, string];
  writeFileSync(snippet, SNIPPET);
  writeFileSync(data, `return { ${chunks.map(luaBytes).join(', ')} }`);
  writeFileSync(driver, LUAJIT_DRIVER);
  const out = execFileSync(
    'luajit',
    [driver, snippet, data, captured ? '1' : '0', cacheLimit === null ? '' : String(cacheLimit)],
    { encoding: 'latin1', maxBuffer: 1 << 22 },
  );
  const at = out.indexOf('\0');
  const rest = out.slice(at + 1);
  return { cache: out.slice(0, at), answer: rest === '\0nil' ? null : rest };
}

async function cacheInHarness(
  c: CacheCase,
): Promise<{ cache: unknown; answer: unknown; errors: string[] }> {
  const st = requestState();
  st.ctxShared.set(CACHE_CAPTURE_KEY, String(c.limit));
  if (c.captured) st.ctxShared.set(CAPTURE_FLAG_KEY, '1');
  for (const ch of c.chunks) await runBodyFilter('cap', [SNIPPET], st, ch, false);
  await runBodyFilter('cap', [SNIPPET], st, Buffer.alloc(0), true);
  return {
    cache: st.ctxShared.get(CACHE_ANSWER_KEY),
    answer: st.ctxShared.get(CAPTURE_ANSWER_KEY),
    errors: st.stats.pdkErrors,
  };
}

for (const c of cacheCases) {
  const check = (
    t: import('ava').ExecutionContext,
    cache: unknown,
    answer: unknown,
    latin1: boolean,
  ) => {
    // LuaJIT's output is bytes (read as latin1); what Kong hands the plugin server is the same
    // string: ASCII or base64, never other bytes.
    const kept = readKeptAnswer(cache);
    if (c.expected === 'cut') t.deepEqual(kept, { kind: 'cut' });
    else t.deepEqual(kept, { kind: 'body', bytes: c.expected });
    if (typeof cache === 'string') t.regex(cache, /^[\x20-\x7e\n\t\r]*$/u, 'only ASCII travels');
    if (c.answer !== undefined) t.is(answer, c.answer);
    else if (!latin1) t.is(answer, undefined, 'no capture answer unless asked');
  };
  test(`cache, LuaJIT: ${c.name}`, (t) => {
    const r = inLuaJit(c.chunks, c.captured, c.limit);
    check(t, r.cache, r.answer ?? undefined, true);
  });
  test(`cache, harness Lua VM: ${c.name}`, async (t) => {
    const r = await cacheInHarness(c);
    t.deepEqual(r.errors, []);
    check(t, r.cache, r.answer, false);
  });
}
