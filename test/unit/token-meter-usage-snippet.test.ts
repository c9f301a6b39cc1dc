/**
 * The usage snippet (plugins/token-meter/usage-snippet.lua): the text kong.yml ships to Kong's
 * post-function is the file's; it reads usage from SSE and JSON bodies however the body is
 * cut into chunks; and LuaJIT (what Kong runs; Debian's `luajit`) and the harness's Lua VM
 * (wasmoon) give the same answer for every case.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { runBodyFilter } from '../../harness/post-function';
import { RequestState } from '../../harness/request-state';
import { decodeUsage } from '../../lib/tokens/usage';
import { eventStreamMessage } from '../../mock-upstream/aws-eventstream';

const ROOT = path.resolve(__dirname, '..', '..');
const SNIPPET = readFileSync(path.join(ROOT, 'plugins/token-meter/usage-snippet.lua'), 'utf8');

const usageJson = (p: number, c: number, cached = 0): string =>
  `{"prompt_tokens":${p},"completion_tokens":${c},"total_tokens":${p + c},"prompt_tokens_details":{"cached_tokens":${cached},"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`;

const sseBody = (model: string, p: number, c: number, cached = 0): string =>
  [
    `data: {"id":"c1","object":"chat.completion.chunk","model":"${model}","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}`,
    `data: {"id":"c1","object":"chat.completion.chunk","model":"${model}","choices":[{"index":0,"delta":{"content":"the usage: {\\"prompt_tokens\\": 999}"}}],"usage":null}`,
    `data: {"id":"c1","object":"chat.completion.chunk","model":"${model}","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
    `data: {"id":"c1","object":"chat.completion.chunk","model":"${model}","choices":[],"usage":${usageJson(p, c, cached)}}`,
    'data: [DONE]',
    '',
  ].join('\n\n');

const jsonBody = (model: string, p: number, c: number): string =>
  `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"${model}","choices":[{"index":0,"message":{"role":"assistant","content":"\\"usage\\": {\\"prompt_tokens\\": 1}"},"finish_reason":"stop"}],"usage":${usageJson(p, c)},"system_fingerprint":"fp"}`;

const responsesBody = `{"id":"resp_1","object":"response","model":"gpt-4o","output":[],"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":2},"output_tokens":4,"total_tokens":15}}`;

// Anthropic's Messages stream: the prompt count in message_start (with output_tokens 1), the
// cumulative output count in the last message_delta.
const anthropicSse = (model: string, p: number, c: number): string =>
  [
    `event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"${model}","content":[],"stop_reason":null,"usage":{"input_tokens":${p},"output_tokens":1}}}`,
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\\"usage\\": {\\"input_tokens\\": 999"}}',
    `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":${c}}}`,
    'event: message_stop\ndata: {"type":"message_stop"}',
    '',
  ].join('\n\n');

// Gemini's stream (alt=sse): cumulative usageMetadata on every chunk, the last one final;
// thinking tokens are billed as output.
const geminiSse = (p: number, c: number, thoughts: number): string =>
  [
    `data: {"candidates":[{"content":{"parts":[{"text":"the"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":${p},"candidatesTokenCount":1,"totalTokenCount":${p + 1}},"modelVersion":"gemini-2.0-flash"}`,
    `data: {"candidates":[{"content":{"parts":[{"text":" end"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":${p},"candidatesTokenCount":${c},"thoughtsTokenCount":${thoughts},"totalTokenCount":${p + c + thoughts}},"modelVersion":"gemini-2.0-flash"}`,
    '',
  ].join('\n\n');

// Gemini's stream without alt=sse: a JSON array, cumulative usageMetadata in each element.
const geminiArray = (p: number, c: number): string =>
  `[{"candidates":[{"content":{"parts":[{"text":"the"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":${p},"candidatesTokenCount":1,"totalTokenCount":${p + 1}}}\r\n,{"candidates":[{"content":{"parts":[{"text":" end"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":${p},"candidatesTokenCount":${c},"totalTokenCount":${p + c}}}]`;

// Anthropic with prompt caching: input_tokens counts only what is neither read from nor written
// to the cache; the bill's prompt is all three, the reads also reported as cached.
const anthropicCachedSse = (p: number, read: number, write: number, c: number): string =>
  [
    `event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[],"stop_reason":null,"usage":{"input_tokens":${p},"cache_creation_input_tokens":${write},"cache_read_input_tokens":${read},"output_tokens":1}}}`,
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
    `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":${c}}}`,
    'event: message_stop\ndata: {"type":"message_stop"}',
    '',
  ].join('\n\n');

// Bedrock Converse (what ai-proxy's bedrock driver calls): JSON usage in camelCase, cache reads
// and writes apart from inputTokens.
const bedrockJson = (p: number, c: number, read = 0, write = 0): string =>
  `{"metrics":{"latencyMs":312},"output":{"message":{"role":"assistant","content":[{"text":"\\"usage\\": {\\"inputTokens\\": 999}"}]}},"stopReason":"end_turn","usage":{"inputTokens":${p},"outputTokens":${c},"totalTokens":${p + c + read + write}${read || write ? `,"cacheReadInputTokens":${read},"cacheWriteInputTokens":${write}` : ''}}}`;

/** One ConverseStream message (mock-upstream/aws-eventstream.ts), one character per byte. */
const eventFrame = (type: string, payload: object): string =>
  eventStreamMessage(type, payload).toString('latin1');

const bedrockStream = (p: number, c: number, read = 0): string =>
  [
    eventFrame('messageStart', { role: 'assistant', p: 'abcd' }),
    eventFrame('contentBlockDelta', {
      contentBlockIndex: 0,
      delta: { text: '"usage": {"inputTokens": 7' },
      p: 'ab',
    }),
    eventFrame('contentBlockStop', { contentBlockIndex: 0, p: 'abcdef' }),
    eventFrame('messageStop', { stopReason: 'end_turn', p: 'a' }),
    eventFrame('metadata', {
      usage: {
        inputTokens: p,
        outputTokens: c,
        totalTokens: p + c + read,
        ...(read ? { cacheReadInputTokens: read } : {}),
      },
      metrics: { latencyMs: 404 },
      p: 'abc',
    }),
  ].join('');

// Cohere's chat API v1 (ai-proxy's cohere driver): what it bills in meta.billed_units (meta.tokens
// counts its prompt template too); the stream is one JSON object per line, usage in stream-end.
const cohereJson = (p: number, c: number): string =>
  `{"response_id":"r1","text":"the \\"billed_units\\": {\\"input_tokens\\": 9}","generation_id":"g1","finish_reason":"COMPLETE","meta":{"api_version":{"version":"1"},"billed_units":{"input_tokens":${p},"output_tokens":${c}},"tokens":{"input_tokens":${p + 60},"output_tokens":${c}}}}`;

const cohereStream = (p: number, c: number): string =>
  [
    '{"is_finished":false,"event_type":"stream-start","generation_id":"g1"}',
    '{"is_finished":false,"event_type":"text-generation","text":"hello"}',
    `{"is_finished":true,"event_type":"stream-end","response":{"response_id":"r1","text":"hello","generation_id":"g1","finish_reason":"COMPLETE","meta":{"api_version":{"version":"1"},"billed_units":{"input_tokens":${p},"output_tokens":${c}},"tokens":{"input_tokens":${p + 60},"output_tokens":${c}}}},"finish_reason":"COMPLETE"}`,
    '',
  ].join('\n');

// Cohere's v2 chat: usage.billed_units and usage.tokens.
const cohereV2Json = (p: number, c: number): string =>
  `{"id":"c2","finish_reason":"COMPLETE","message":{"role":"assistant","content":[{"type":"text","text":"hi"}]},"usage":{"billed_units":{"input_tokens":${p},"output_tokens":${c}},"tokens":{"input_tokens":${p + 60},"output_tokens":${c}}}}`;

// Ollama's chat API (ai-proxy's llama2 driver, llama2_format ollama): no `usage` object; the
// counts follow `"done": true`, in its JSON answer or its NDJSON stream's last line.
const ollamaDone = (p: number, c: number, content = ''): string =>
  `{"model":"llama3.1","created_at":"2026-12-07T06:00:00Z","message":{"role":"assistant","content":"${content}"},"done_reason":"stop","done":true,"total_duration":5000000,"load_duration":1000000,"prompt_eval_count":${p},"prompt_eval_duration":1000000,"eval_count":${c},"eval_duration":3000000}`;

const ollamaStream = (p: number, c: number): string =>
  [
    '{"model":"llama3.1","created_at":"2026-12-07T06:00:00Z","message":{"role":"assistant","content":"say \\"done\\": true, \\"eval_count\\": 1 "},"done":false}',
    '{"model":"llama3.1","created_at":"2026-12-07T06:00:00Z","message":{"role":"assistant","content":"hi"},"done":false}',
    ollamaDone(p, c),
    '',
  ].join('\n');

function cut(body: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.slice(i, i + size));
  return out;
}

interface Case {
  name: string;
  chunks: string[];
  expected: string | null;
  /** No final eof call: a later plugin (ai-proxy) ended a buffered body in the same call. */
  noEof?: boolean;
}

const anthropicJson = (model: string, p: number, c: number): string =>
  `{"id":"msg_1","type":"message","role":"assistant","model":"${model}","content":[{"type":"text","text":"\\"usage\\": {\\"input_tokens\\": 9}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":${p},"output_tokens":${c}}}`;

const cases: Case[] = [
  ...[1, 7, 64, 100000].map((size) => ({
    name: `SSE cut every ${size} bytes`,
    chunks: cut(sseBody('gpt-4o-mini', 21, 9, 3), size),
    expected: 'v=1;prompt=21;completion=9;total=30;cached=3;model=gpt-4o-mini;from=sse',
  })),
  ...[5, 100000].map((size) => ({
    name: `JSON cut every ${size} bytes`,
    chunks: cut(jsonBody('gpt-4o', 14, 6), size),
    expected: 'v=1;prompt=14;completion=6;total=20;cached=0;model=gpt-4o;from=json',
  })),
  ...[3, 100000].map((size) => ({
    name: `Anthropic's stream cut every ${size} bytes (input in message_start, output in message_delta)`,
    chunks: cut(anthropicSse('claude-3-5-haiku', 40, 12), size),
    expected: 'v=1;prompt=40;completion=12;total=52;cached=0;model=claude-3-5-haiku;from=sse',
  })),
  ...[2, 100000].map((size) => ({
    name: `Gemini's stream cut every ${size} bytes (cumulative usageMetadata, thoughts as output)`,
    chunks: cut(geminiSse(17, 5, 3), size),
    expected: 'v=1;prompt=17;completion=8;total=25;cached=0;model=;from=sse',
  })),
  {
    name: "Gemini's JSON-array stream: the last cumulative usage, not the first",
    chunks: cut(geminiArray(17, 5), 60),
    expected: 'v=1;prompt=17;completion=5;total=22;cached=0;model=;from=json',
  },
  {
    name: 'a JSON array never ends early on a whole usage object (no eof: nothing)',
    chunks: [geminiArray(17, 5)],
    noEof: true,
    expected: null,
  },
  {
    name: 'a JSON answer whose eof never comes (buffered, before ai-proxy): its whole usage object',
    chunks: [anthropicJson('claude-3-5-haiku', 23, 6)],
    noEof: true,
    expected: 'v=1;prompt=23;completion=6;total=29;cached=0;model=claude-3-5-haiku;from=json',
  },
  {
    name: "Anthropic's stream cut before message_stop: no usage (billed at the bound)",
    chunks: [anthropicSse('claude-3-5-haiku', 40, 12).split('event: message_stop')[0] ?? ''],
    expected: null,
  },
  {
    name: 'a stream cut before its end: no usage from message_start alone',
    chunks: cut(anthropicSse('claude-3-5-haiku', 40, 12), 100000).map(
      (x) => x.split('event: content_block_start')[0] ?? '',
    ),
    noEof: true,
    expected: null,
  },
  {
    name: 'Responses API usage (input/output tokens)',
    chunks: [responsesBody],
    expected: 'v=1;prompt=11;completion=4;total=15;cached=2;model=gpt-4o;from=json',
  },
  {
    name: 'a stream without usage',
    chunks: ['data: {"model":"gpt-4o","choices":[],"usage":null}\n\n', 'data: [DONE]\n\n'],
    expected: null,
  },
  {
    name: 'embeddings usage (prompt and total only)',
    chunks: [
      '{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}',
    ],
    expected: 'v=1;prompt=8;completion=0;total=8;cached=0;model=text-embedding-3-small;from=json',
  },
  { name: 'an error body', chunks: ['{"error":{"message":"no","type":"x"}}'], expected: null },
  ...[3, 100000].map((size) => ({
    name: `Anthropic's stream with prompt caching, cut every ${size} bytes: reads and writes billed as prompt`,
    chunks: cut(anthropicCachedSse(10, 2000, 100, 40), size),
    expected: 'v=1;prompt=2110;completion=40;total=2150;cached=2000;model=claude-sonnet-4;from=sse',
  })),
  {
    name: "Anthropic's JSON with prompt caching",
    chunks: [
      '{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4","content":[],"stop_reason":"end_turn","usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":300,"output_tokens":7}}',
    ],
    expected: 'v=1;prompt=312;completion=7;total=319;cached=300;model=claude-sonnet-4;from=json',
  },
  ...[4, 100000].map((size) => ({
    name: `Bedrock Converse JSON cut every ${size} bytes`,
    chunks: cut(bedrockJson(25, 9), size),
    expected: 'v=1;prompt=25;completion=9;total=34;cached=0;model=;from=json',
  })),
  {
    name: 'Bedrock Converse JSON with prompt caching',
    chunks: [bedrockJson(25, 9, 400, 50)],
    expected: 'v=1;prompt=475;completion=9;total=484;cached=400;model=;from=json',
  },
  ...[5, 64, 100000].map((size) => ({
    name: `Bedrock ConverseStream (binary event stream) cut every ${size} bytes: the metadata event`,
    chunks: cut(bedrockStream(31, 12), size),
    expected: 'v=1;prompt=31;completion=12;total=43;cached=0;model=;from=json',
  })),
  {
    name: 'Bedrock ConverseStream with cache reads',
    chunks: [bedrockStream(31, 12, 500)],
    expected: 'v=1;prompt=531;completion=12;total=543;cached=500;model=;from=json',
  },
  {
    name: 'Bedrock ConverseStream cut before its metadata event: no usage (billed at the bound)',
    chunks: [
      bedrockStream(31, 12).split(':event-type')[0] ?? '',
      eventFrame('contentBlockDelta', { delta: { text: 'x' } }),
    ],
    expected: null,
  },
  ...[6, 100000].map((size) => ({
    name: `Cohere v1 JSON cut every ${size} bytes: billed_units, not tokens`,
    chunks: cut(cohereJson(5, 11), size),
    expected: 'v=1;prompt=5;completion=11;total=16;cached=0;model=;from=json',
  })),
  ...[7, 100000].map((size) => ({
    name: `Cohere v1 stream cut every ${size} bytes: stream-end's billed_units`,
    chunks: cut(cohereStream(5, 11), size),
    expected: 'v=1;prompt=5;completion=11;total=16;cached=0;model=;from=json',
  })),
  {
    name: 'Cohere v2 JSON: usage.billed_units',
    chunks: [cohereV2Json(8, 3)],
    expected: 'v=1;prompt=8;completion=3;total=11;cached=0;model=;from=json',
  },
  ...[3, 100000].map((size) => ({
    name: `Ollama JSON cut every ${size} bytes: prompt_eval_count and eval_count`,
    chunks: cut(ollamaDone(37, 12, 'the \\"done\\": true, \\"eval_count\\": 999'), size),
    expected: 'v=1;prompt=37;completion=12;total=49;cached=0;model=llama3.1;from=json',
  })),
  {
    name: 'Ollama JSON whose eof never comes (buffered, before ai-proxy): its counts once whole',
    chunks: [ollamaDone(37, 12)],
    noEof: true,
    expected: 'v=1;prompt=37;completion=12;total=49;cached=0;model=llama3.1;from=json',
  },
  {
    name: "Ollama JSON cut inside eval_count's number, no eof: not read as a shorter count",
    chunks: [ollamaDone(37, 1234).split('"eval_count":12')[0] + '"eval_count":12'],
    noEof: true,
    expected: null,
  },
  ...[5, 100000].map((size) => ({
    name: `Ollama's NDJSON stream cut every ${size} bytes: the done line's counts`,
    chunks: cut(ollamaStream(40, 2), size),
    expected: 'v=1;prompt=40;completion=2;total=42;cached=0;model=llama3.1;from=json',
  })),
  {
    name: "Ollama's stream cut before its done line: no usage (billed at the bound)",
    chunks: [ollamaStream(40, 2).split('\n').slice(0, 2).join('\n') + '\n'],
    expected: null,
  },
  {
    name: 'a model name with characters outside the wire pattern is cleaned',
    chunks: [`{"model":"gpt;4o=x","usage":${usageJson(1, 2)}}`],
    expected: 'v=1;prompt=1;completion=2;total=3;cached=0;model=gpt4ox;from=json',
  },
];

test('kong.yml ships the snippet file verbatim in post-function body_filter', (t) => {
  const doc = parse(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')) as {
    plugins: Array<{ name: string; config?: { body_filter?: string[] } }>;
  };
  const pf = doc.plugins.filter((p) => p.name === 'post-function');
  t.is(pf.length, 1);
  // First; the capture answer snippet follows it (test/unit/capture-answer-snippet.test.ts).
  t.is(pf[0]?.config?.body_filter?.[0], SNIPPET);
});

async function runInHarness(
  chunks: string[],
  noEof = false,
): Promise<{ usage: string | null; errors: string[] }> {
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
  // latin1: one byte per character, so a binary frame reaches Lua as its bytes.
  for (const c of chunks)
    await runBodyFilter('unit', [SNIPPET], st, Buffer.from(c, 'latin1'), false);
  if (!noEof) await runBodyFilter('unit', [SNIPPET], st, Buffer.alloc(0), true);
  const v = st.ctxShared.get('llm_usage');
  return { usage: typeof v === 'string' ? v : null, errors: st.stats.pdkErrors };
}

// The sandbox env of kong/tools/kong-lua-sandbox.lua (the parts a snippet can reach), then
// the snippet's 0.2.0-style function driven chunk by chunk as nginx's body_filter does.
const LUAJIT_DRIVER = `
local code = assert(io.open(arg[1])):read('*a')
local chunks = dofile(arg[2])
local shared, serialized = {}, {}
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, math = math, table = table,
  ngx = { arg = {}, ctx = {} },
  kong = { ctx = { shared = shared }, log = { set_serialize_value = function(k, v) serialized[k] = v end } },
}
local f = assert(loadstring(code, '=post-function'))
setfenv(f, env)
local fn = f()
assert(type(fn) == 'function', 'the snippet returns its body_filter function')
for _, c in ipairs(chunks) do env.ngx.arg[1] = c; env.ngx.arg[2] = false; fn() end
if arg[3] ~= 'no-eof' then env.ngx.arg[1] = ''; env.ngx.arg[2] = true; fn() end
local s = serialized.llm_usage
if shared.llm_usage and (not s or s.prompt_tokens == nil) then error('serialize value missing') end
io.write(shared.llm_usage or 'nil')
`;

/** A Lua string literal of `s`'s latin1 bytes: printable ASCII as is, every other byte `\\ddd`. */
function luaString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'latin1')) {
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c
        ? String.fromCharCode(b)
        : `\\${String(b).padStart(3, '0')}`;
  }
  return `${out}"`;
}

function runInLuaJit(chunks: string[], noEof = false): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'usage-snippet-'));
  const snippet = path.join(dir, 'snippet.lua');
  const data = path.join(dir, 'chunks.lua');
  const driver = path.join(dir, 'driver.lua');
  writeFileSync(snippet, SNIPPET);
  writeFileSync(data, `return { ${chunks.map(luaString).join(', ')} }`);
  writeFileSync(driver, LUAJIT_DRIVER);
  const out = execFileSync('luajit', [driver, snippet, data, noEof ? 'no-eof' : 'eof'], {
    encoding: 'utf8',
  });
  return out === 'nil' ? null : out;
}

for (const c of cases) {
  test(`harness Lua VM: ${c.name}`, async (t) => {
    const r = await runInHarness(c.chunks, c.noEof);
    t.deepEqual(r.errors, []);
    t.is(r.usage, c.expected);
    if (c.expected !== null) t.truthy(decodeUsage(r.usage), 'the JS side decodes what Lua wrote');
  });

  test(`LuaJIT (apt-get install luajit): ${c.name}`, (t) => {
    t.is(runInLuaJit(c.chunks, c.noEof), c.expected);
  });
}
