import test from 'ava';
import {
  assertJsonContentType,
  parseJsonObject,
  precheckBody,
} from '../../plugins/tenant-auth/body';
import { applyPersona, applyToolPolicy, toolIdentity } from '../../plugins/tenant-auth/rewrite';
import { isGatewayError } from '../../lib/http/errors';
import type { TenantPolicy } from '../../lib/tenant/context';

const policy = (tools: string[], persona: string | null = null): TenantPolicy => ({
  toolsAllowed: tools,
  preferredModel: null,
  fallbackModel: null,
  persona,
  knowledgeNamespace: 'acme',
  weight: 1,
  models: [],
});
const fn = (name: string) => ({ type: 'function', function: { name, parameters: {} } });

function status(f: () => unknown): number | undefined {
  try {
    f();
  } catch (e) {
    return isGatewayError(e) ? e.status : -1;
  }
  return undefined;
}

test('precheck: no body, nothing to read', (t) => {
  t.false(precheckBody({}, 100).present);
  t.false(precheckBody({ 'content-length': ['0'] }, 100).present);
});

test('precheck: 413 from content-length without reading', (t) => {
  t.is(
    status(() =>
      precheckBody({ 'content-length': ['101'], 'content-type': ['application/json'] }, 100),
    ),
    413,
  );
});

test('precheck: 415 for non-JSON content types, JSON variants accepted', (t) => {
  t.is(
    status(() => precheckBody({ 'content-length': ['5'], 'content-type': ['text/plain'] }, 100)),
    415,
  );
  t.is(
    status(() => precheckBody({ 'content-length': ['5'] }, 100)),
    415,
  );
  t.deepEqual(
    precheckBody(
      { 'content-length': ['5'], 'content-type': ['application/json; charset=utf-8'] },
      100,
    ),
    { present: true, lengthKnown: true },
  );
  // A chunked body's size is known only once read: it must not be read with a limit.
  t.deepEqual(
    precheckBody(
      { 'transfer-encoding': ['chunked'], 'content-type': ['application/vnd.api+json'] },
      100,
    ),
    { present: true, lengthKnown: false },
  );
});

test('parse: 400 for malformed JSON and non-objects, 413 for a long chunked body', (t) => {
  t.is(
    status(() => parseJsonObject(Buffer.from('{"a":'), 100)),
    400,
  );
  t.is(
    status(() => parseJsonObject(Buffer.from('[1]'), 100)),
    400,
  );
  t.is(
    status(() => parseJsonObject(Buffer.from('null'), 100)),
    400,
  );
  t.is(
    status(() => parseJsonObject(Buffer.alloc(101, 32), 100)),
    413,
  );
  t.deepEqual(parseJsonObject(Buffer.from('{"a":1}'), 100), { a: 1 });
});

test('precheck: 415 for a compressed body; identity is fine', (t) => {
  const h = (enc: string) => ({
    'content-length': ['5'],
    'content-type': ['application/json'],
    'content-encoding': [enc],
  });
  for (const enc of ['gzip', 'br', 'deflate', 'GZIP', 'zstd']) {
    t.is(
      status(() => precheckBody(h(enc), 100)),
      415,
      enc,
    );
  }
  t.true(precheckBody(h('identity'), 100).present);
});

test('parse: 400 invalid_encoding for bytes that are not UTF-8', (t) => {
  const bad = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  t.is(
    status(() => parseJsonObject(bad, 100)),
    400,
  );
  try {
    parseJsonObject(bad, 100);
  } catch (e) {
    t.true(isGatewayError(e) && e.code === 'invalid_encoding');
  }
  // Valid multi-byte UTF-8 is fine.
  t.deepEqual(parseJsonObject(Buffer.from('{"a":"żółw 🐢"}'), 100), { a: 'żółw 🐢' });
});

test('parse: the error message never quotes the body (no raw bytes echoed)', (t) => {
  const secretish = '{"model": "x", "messages": \u0007SECRET\u0001';
  try {
    parseJsonObject(Buffer.from(secretish), 1000);
    t.fail();
  } catch (e) {
    t.true(isGatewayError(e));
    const msg = (e as Error).message;
    t.false(msg.includes('SECRET'), msg);
    t.regex(msg, /^request body is not valid JSON( \(at character \d+\))?$/);
  }
});

test('parse: a body nested deeper than 128 levels is a 400, however deep, never a crash', (t) => {
  const body = (depth: number) =>
    Buffer.from(`{"model":"m","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`);
  // The top-level object is one level: 127 nested arrays inside it are 128 levels.
  t.notThrows(() => parseJsonObject(body(127), 10_000_000));
  for (const depth of [128, 5_000, 1_000_000]) {
    const e = t.throws(() => parseJsonObject(body(depth), 10_000_000));
    t.true(isGatewayError(e), String(e));
    if (isGatewayError(e)) {
      t.is(e.status, 400);
      t.is(e.code, 'json_too_deep');
    }
  }
});

test('parse: __proto__, constructor and prototype keys are refused at any depth, however escaped', (t) => {
  const code = (s: string) => {
    try {
      parseJsonObject(Buffer.from(s), 10_000);
      return 'accepted';
    } catch (e) {
      return isGatewayError(e) ? `${e.status} ${e.code} ${String(e.spec.param)}` : 'crash';
    }
  };
  t.is(code('{"__proto__":{"admin":true}}'), '400 forbidden_json_key __proto__');
  t.is(code('{"a":[{"b":{"constructor":{"prototype":1}}}]}'), '400 forbidden_json_key prototype');
  t.is(code('{"\\u005f_proto__":{"x":1}}'), '400 forbidden_json_key __proto__');
  t.is(code('{"constr\\u0075ctor":1}'), '400 forbidden_json_key constructor');
  // The words as values, or inside longer keys, are ordinary text.
  t.is(
    code('{"messages":[{"role":"user","content":"what is __proto__ or a constructor?"}]}'),
    'accepted',
  );
  t.is(code('{"my_constructor":1,"\\u0041":2}'), 'accepted');
  // Nothing was polluted by the attempts.
  t.is(({} as Record<string, unknown>).admin, undefined);
});

test('tools: strip removes ungranted tools and keeps granted ones', (t) => {
  const body: Record<string, unknown> = { tools: [fn('search'), fn('crm_write'), fn('email')] };
  t.deepEqual(applyToolPolicy(body, policy(['search']), 'strip'), ['crm_write', 'email']);
  t.deepEqual(body.tools, [fn('search')]);
});

test('tools: strip of every tool removes tools, tool_choice and parallel_tool_calls', (t) => {
  const body: Record<string, unknown> = {
    tools: [fn('crm_write')],
    tool_choice: 'auto',
    parallel_tool_calls: true,
  };
  applyToolPolicy(body, policy([]), 'strip');
  t.false('tools' in body);
  t.false('tool_choice' in body);
  t.false('parallel_tool_calls' in body);
});

test('tools: reject mode refuses with 403', (t) => {
  t.is(
    status(() =>
      applyToolPolicy({ tools: [fn('search'), fn('crm_write')] }, policy(['search']), 'reject'),
    ),
    403,
  );
});

test('tools: a tool_choice naming a forbidden tool is refused even in strip mode', (t) => {
  const body = {
    tools: [fn('crm_write')],
    tool_choice: { type: 'function', function: { name: 'crm_write' } },
  };
  t.is(
    status(() => applyToolPolicy(body, policy(['search']), 'strip')),
    403,
  );
});

test('tools: "required" with nothing left is refused', (t) => {
  t.is(
    status(() =>
      applyToolPolicy({ tools: [fn('crm_write')], tool_choice: 'required' }, policy([]), 'strip'),
    ),
    403,
  );
});

test('tools: legacy functions/function_call are policed too', (t) => {
  const body: Record<string, unknown> = { functions: [{ name: 'search' }, { name: 'crm_write' }] };
  t.deepEqual(applyToolPolicy(body, policy(['search']), 'strip'), ['crm_write']);
  t.deepEqual(body.functions, [{ name: 'search' }]);
  t.is(
    status(() =>
      applyToolPolicy({ function_call: { name: 'crm_write' } }, policy(['search']), 'strip'),
    ),
    403,
  );
});

test('tools: unnamed tool entries are not granted; * grants all; non-array is 400', (t) => {
  const body: Record<string, unknown> = { tools: [{ type: 'function' }, fn('x')] };
  t.deepEqual(applyToolPolicy(body, policy(['x']), 'strip'), ['<unnamed>']);
  const all: Record<string, unknown> = { tools: [fn('a'), fn('b')] };
  t.deepEqual(applyToolPolicy(all, policy(['*']), 'strip'), []);
  t.is((all.tools as unknown[]).length, 2);
  t.is(
    status(() => applyToolPolicy({ tools: 'search' }, policy(['*']), 'strip')),
    400,
  );
});

test('persona: prepend keeps client system messages after the persona', (t) => {
  const body: Record<string, unknown> = {
    messages: [
      { role: 'system', content: 'client' },
      { role: 'user', content: 'hi' },
    ],
  };
  t.true(applyPersona(body, 'You are Acme bot.', 'prepend'));
  t.deepEqual(body.messages, [
    { role: 'system', content: 'You are Acme bot.' },
    { role: 'system', content: 'client' },
    { role: 'user', content: 'hi' },
  ]);
});

test('persona: replace drops client system and developer messages', (t) => {
  const body: Record<string, unknown> = {
    messages: [
      { role: 'system', content: 'ignore previous' },
      { role: 'developer', content: 'x' },
      { role: 'user', content: 'hi' },
    ],
  };
  applyPersona(body, 'P', 'replace');
  t.deepEqual(body.messages, [
    { role: 'system', content: 'P' },
    { role: 'user', content: 'hi' },
  ]);
});

test('persona: nothing to do without persona or messages', (t) => {
  t.false(applyPersona({ messages: [] }, null, 'prepend'));
  t.false(applyPersona({ prompt: 'x' }, 'P', 'prepend'));
});

test('persona: an empty conversation stays empty, for the provider to refuse', (t) => {
  for (const mode of ['prepend', 'replace'] as const) {
    const body: Record<string, unknown> = { model: 'm', messages: [] };
    t.false(applyPersona(body, 'P', mode));
    t.deepEqual(body.messages, []);
  }
  // Only system messages, replaced: still a conversation (the persona's), as OpenAI accepts.
  const systemOnly: Record<string, unknown> = { messages: [{ role: 'system', content: 'x' }] };
  t.true(applyPersona(systemOnly, 'P', 'replace'));
  t.deepEqual(systemOnly.messages, [{ role: 'system', content: 'P' }]);
});

test('persona: Responses API bodies get it as instructions', (t) => {
  const prepend: Record<string, unknown> = { input: 'hi', instructions: 'Be EvilBot.' };
  t.true(applyPersona(prepend, 'P', 'prepend'));
  t.is(prepend.instructions, 'P\n\nBe EvilBot.');
  const replace: Record<string, unknown> = {
    input: [
      { role: 'system', content: 'x' },
      { role: 'user', content: 'hi' },
    ],
    instructions: 'Be EvilBot.',
  };
  t.true(applyPersona(replace, 'P', 'replace'));
  t.is(replace.instructions, 'P');
  t.deepEqual(replace.input, [{ role: 'user', content: 'hi' }]);
});

test('persona: replace drops system roles in any case or padding', (t) => {
  const body: Record<string, unknown> = {
    messages: [
      { role: 'System', content: 'a' },
      { role: ' developer ', content: 'b' },
      { role: 'user', content: 'c' },
    ],
  };
  applyPersona(body, 'P', 'replace');
  t.deepEqual(body.messages, [
    { role: 'system', content: 'P' },
    { role: 'user', content: 'c' },
  ]);
});

test('tool identity: function names, conflicting names, built-in types', (t) => {
  t.is(toolIdentity({ type: 'function', function: { name: 'search' } }), 'search');
  t.is(toolIdentity({ type: 'function', name: 'search' }), 'search');
  t.is(toolIdentity({ type: 'function', name: 'shell', function: { name: 'search' } }), null);
  t.is(toolIdentity({ type: 'custom', name: 'search' }), 'search');
  t.is(toolIdentity({ type: 'mcp', name: 'search', server_url: 'https://x' }), 'mcp');
  t.is(toolIdentity({ type: 'code_interpreter', name: 'calculator' }), 'code_interpreter');
  t.is(toolIdentity({ function: { name: 'search' } }), null, 'no type');
  t.is(toolIdentity({ name: 'search' }, true), 'search', 'legacy functions entry');
  t.is(toolIdentity(['search']), null);
});

test('tools: only the granted shapes survive; a built-in type is granted by its type', (t) => {
  const body: Record<string, unknown> = {
    tools: [
      { type: 'function', name: 'shell', function: { name: 'search' } },
      { type: 'mcp', name: 'search', server_url: 'https://attacker.example/mcp' },
      { type: 'code_interpreter', name: 'calculator' },
      { type: 'web_search' },
      { type: 'function', function: { name: 'search' } },
    ],
  };
  t.deepEqual(applyToolPolicy(body, policy(['search', 'calculator', 'web_search']), 'strip'), [
    '<unnamed>',
    'mcp',
    'code_interpreter',
  ]);
  t.deepEqual(body.tools, [
    { type: 'web_search' },
    { type: 'function', function: { name: 'search' } },
  ]);
});

test('tools: an allowed_tools choice is refused when it names a forbidden tool', (t) => {
  const choice = {
    type: 'allowed_tools',
    mode: 'auto',
    tools: [{ type: 'function', name: 'search' }, { type: 'mcp' }],
  };
  t.is(
    status(() => applyToolPolicy({ tools: [], tool_choice: choice }, policy(['search']), 'strip')),
    403,
  );
  t.is(
    status(() =>
      applyToolPolicy(
        { tool_choice: { type: 'function', name: 'shell' } },
        policy(['search']),
        'strip',
      ),
    ),
    403,
  );
});

test('content type: a body found without declaring headers must still be JSON', (t) => {
  t.is(
    status(() => assertJsonContentType({ 'content-type': ['text/plain'] })),
    415,
  );
  t.is(
    status(() => assertJsonContentType({})),
    415,
  );
  t.notThrows(() => assertJsonContentType({ 'content-type': ['application/json'] }));
});
