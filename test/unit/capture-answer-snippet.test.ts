/**
 * The capture answer snippet (lib/capture/answer-snippet.lua): kong.yml ships the file's text
 * in post-function body_filter after the usage snippet; for a request drafted for capture it
 * keeps the first 64 KiB of the body however it is cut into chunks (`all;` or `cut;`), and for
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

async function runInHarness(c: Case): Promise<{ answer: string | null; errors: string[] }> {
  const st = new RequestState(
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
  if (c.captured) st.ctxShared.set(CAPTURE_FLAG_KEY, '1');
  for (const ch of c.chunks) await runBodyFilter('cap', [SNIPPET], st, Buffer.from(ch), false);
  await runBodyFilter('cap', [SNIPPET], st, Buffer.alloc(0), true);
  const v = st.ctxShared.get(CAPTURE_ANSWER_KEY);
  return { answer: typeof v === 'string' ? v : null, errors: st.stats.pdkErrors };
}

const LUAJIT_DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local chunks = dofile(arg[2])
local shared = {}
if arg[3] == '1' then shared.kta_capture = '1' end
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, math = math, table = table,
  ngx = { arg = {}, ctx = {} },
  kong = { ctx = { shared = shared } },
}
local f = assert(loadstring(code, '=post-function'))
setfenv(f, env)
local fn = f()
for _, c in ipairs(chunks) do env.ngx.arg[1] = c; env.ngx.arg[2] = false; fn() end
env.ngx.arg[1] = ''; env.ngx.arg[2] = true; fn()
io.write(shared.kta_capture_answer or '\\0nil')
`;

function runInLuaJit(c: Case): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'answer-snippet-'));
  const files = ['snippet.lua', 'chunks.lua', 'driver.lua'].map((f) => path.join(dir, f));
  const [snippet, data, driver] = files as [string, string, string];
  writeFileSync(snippet, SNIPPET);
  writeFileSync(data, `return { ${c.chunks.map((x) => JSON.stringify(x)).join(', ')} }`);
  writeFileSync(driver, LUAJIT_DRIVER);
  const out = execFileSync('luajit', [driver, snippet, data, c.captured ? '1' : '0'], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return out === '\0nil' ? null : out;
}

for (const c of cases) {
  test(`harness Lua VM: ${c.name}`, async (t) => {
    const r = await runInHarness(c);
    t.deepEqual(r.errors, []);
    t.is(r.answer, c.expected);
  });
  test(`LuaJIT: ${c.name}`, (t) => {
    t.is(runInLuaJit(c), c.expected);
  });
}

test('what the snippet keeps, the recorder reads as the answer', (t) => {
  t.is(readAnswer(completion).text, 'forty-two');
});
