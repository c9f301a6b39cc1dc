/**
 * Judging an eval case (scripts/eval/checks.ts), the case format (format.ts) and the JSON
 * Schema subset of answer assertions (json-schema.ts); and the repo's own eval sets: they
 * load, and together they cover every outcome kind the chain decides.
 */
import test from 'ava';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { answerText, injectedSources, judge, type ClientResponse } from '../../scripts/eval/checks';
import {
  EvalFormatError,
  loadEvalSets,
  parseCase,
  writeCaseFile,
  withRunId,
  type Expectations,
} from '../../scripts/eval/format';
import { validateJson } from '../../scripts/eval/json-schema';

const ROOT = path.resolve(__dirname, '..', '..');

function expectations(raw: unknown): Expectations {
  return parseCase({ id: 'c', request: {}, expect: raw }, 'acme', 'x.yaml', -1).expect;
}

function ok(body: unknown, headers: Record<string, string> = {}): ClientResponse {
  return { status: 200, headers, text: JSON.stringify(body) };
}

const PERSONA = "You are Acme Corp's support assistant.";
const fence = (rank: number, source: string) =>
  `<<<KNOWLEDGE-0123456789abcdef ${rank} source="${source}" score="0.5">>>\ntext\n<<<END KNOWLEDGE-0123456789abcdef ${rank}>>>`;
const upstreamBody = {
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: PERSONA },
    {
      role: 'system',
      content: `Reference documents\n\n${fence(1, 'returns.md')}\n${fence(2, 'a&amp;b.md')}`,
    },
    { role: 'user', content: 'hi' },
  ],
  tools: [{ type: 'function', function: { name: 'search' } }, { type: 'web_search' }],
};
const seen = { observable: true as const, bodies: [upstreamBody] };

test('what the upstream received: persona, model, tools, injected sources in rank order', (t) => {
  t.deepEqual(injectedSources(upstreamBody), ['returns.md', 'a&b.md']);
  const pass = judge(
    expectations({
      upstream: {
        persona: PERSONA,
        model: 'gpt-4o',
        tools: ['web_search', 'search'],
        called: true,
      },
      retrieval: { k: 1, hit: 'returns.md' },
    }),
    ok({}),
    seen,
    ['returns.md', 'a&b.md'],
  );
  t.deepEqual(pass, { outcome: 'pass' });
  const fail = judge(
    expectations({
      upstream: { persona: 'Another persona', model: 'gpt-4o-mini', tools: ['search'] },
      retrieval: { k: 1, hit: ['a&b.md'] },
    }),
    ok({}),
    seen,
    ['returns.md'],
  );
  t.is(fail.outcome, 'fail');
  const reasons = fail.outcome === 'fail' ? fail.reasons.join('\n') : '';
  t.regex(reasons, /persona: expected/);
  t.regex(reasons, /upstream model: expected gpt-4o-mini, got "gpt-4o"/);
  t.regex(reasons, /tools offered upstream: expected \["search"\], got \["search","web_search"\]/);
  t.regex(reasons, /retrieval hit@1: a&b\.md not in \["returns\.md"\]/);
  t.regex(reasons, /sources not the tenant's own: \["a&b\.md"\]/);
});

test('no upstream call: "called: false" holds, and body checks fail rather than pass on nothing', (t) => {
  const none = { observable: true as const, bodies: [] };
  t.deepEqual(judge(expectations({ upstream: { called: false } }), ok({}), none, []), {
    outcome: 'pass',
  });
  const v = judge(expectations({ upstream: { model: 'gpt-4o' } }), ok({}), none, []);
  t.is(v.outcome, 'fail');
  const v2 = judge(expectations({ upstream: { called: false } }), ok({}), seen, []);
  t.is(v2.outcome, 'fail');
});

test('upstream checks where the upstream cannot be seen are n/a, never a pass', (t) => {
  const v = judge(
    expectations({ status: 200, upstream: { called: true } }),
    ok({}),
    { observable: false },
    [],
  );
  t.is(v.outcome, 'n/a');
  t.deepEqual(judge(expectations({ status: 200 }), ok({}), { observable: false }, []), {
    outcome: 'pass',
  });
});

test('status, error code and type, headers present and absent', (t) => {
  const refusal: ClientResponse = {
    status: 429,
    headers: { 'x-budget-state': 'exhausted' },
    text: JSON.stringify({
      error: { message: 'm', type: 'insufficient_quota', code: 'budget_exhausted' },
    }),
  };
  const e = {
    status: 429,
    error: { code: 'budget_exhausted', type: 'insufficient_quota' },
    headers: { 'X-Budget-State': 'exhausted', 'x-cache-status': null },
  };
  t.deepEqual(judge(expectations(e), refusal, seen, []), { outcome: 'pass' });
  const v = judge(
    expectations({
      status: 403,
      error: { code: 'tool_not_permitted' },
      headers: { 'x-budget-state': null },
    }),
    refusal,
    seen,
    [],
  );
  t.is(v.outcome, 'fail');
  t.is(v.outcome === 'fail' ? v.reasons.length : 0, 3);
});

test('answers: contains / not contains (case-insensitive), JSON schema, streams too', (t) => {
  const res = ok({
    choices: [{ message: { content: '```json\n{"days": 30, "receipt_required": true}\n```' } }],
  });
  const schema = {
    type: 'object',
    required: ['days', 'receipt_required'],
    properties: { days: { type: 'integer', minimum: 30 }, receipt_required: { const: true } },
    additionalProperties: false,
  };
  t.deepEqual(
    judge(
      expectations({ answer: { contains: ['DAYS'], not_contains: ['60'], json_schema: schema } }),
      res,
      seen,
      [],
    ),
    { outcome: 'pass' },
  );
  const wrong = ok({ choices: [{ message: { content: '{"days": "thirty", "extra": 1}' } }] });
  const v = judge(expectations({ answer: { json_schema: schema } }), wrong, seen, []);
  t.is(v.outcome, 'fail');
  t.regex(
    v.outcome === 'fail' ? (v.reasons[0] ?? '') : '',
    /\/receipt_required: required; \/days: expected integer, got string; \/extra: not allowed/,
  );
  const sse: ClientResponse = {
    status: 200,
    headers: {},
    text: 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\ndata: {"choices":[{"delta":{"content":"30 "}}]}\n\ndata: {"choices":[{"delta":{"content":"days"}}]}\n\ndata: [DONE]\n\n',
  };
  t.is(answerText(sse), '30 days');
});

test('JSON Schema: a keyword outside the subset is refused, not ignored', (t) => {
  t.deepEqual(validateJson('x', { type: 'string', format: 'email' }), [
    '/: schema keyword "format" is not supported',
  ]);
  t.deepEqual(validateJson([1, 'a'], { type: 'array', items: { type: 'number' } }), [
    '/1: expected number, got string',
  ]);
  t.deepEqual(validateJson(3, { anyOf: [{ type: 'string' }, { minimum: 1 }] }), []);
});

test('the case format: typos and empty expectations are refused with the file and case named', (t) => {
  t.throws(
    () => parseCase({ id: 'a', request: {}, expect: { stauts: 200 } }, 'acme', 'f.yaml', 0),
    {
      instanceOf: EvalFormatError,
      message: /f\.yaml case a\.expect: unknown field "stauts"/,
    },
  );
  t.throws(() => parseCase({ id: 'a', request: {}, expect: {} }, 'acme', 'f.yaml', 0), {
    message: /expects nothing/,
  });
  t.throws(
    () =>
      parseCase(
        { id: 'a', request: {}, expect: { retrieval: { none: true, hit: 'x.md' } } },
        'acme',
        'f',
        0,
      ),
    { message: /contradict/ },
  );
  const c = parseCase(
    { id: 'a', request: { body: { q: 'x {{run}}' } }, expect: { status: 200 } },
    'acme',
    'f',
    0,
  );
  t.like(c.request, { method: 'POST', path: '/v1/chat/completions', auth: 'tenant' });
  t.deepEqual(withRunId(c.request.body, 'r1'), { q: 'x r1' });
});

test('eval sets: one case per file or a list, unique ids, keys from the environment win', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'evals-'));
  mkdirSync(path.join(dir, 'acme', 'regressions'), { recursive: true });
  writeFileSync(path.join(dir, 'acme', 'tenant.yaml'), 'api_key: from-file\n');
  writeFileSync(
    path.join(dir, 'acme', 'a.yaml'),
    'cases:\n  - { id: one, request: {}, expect: { status: 200 } }\n',
  );
  writeFileSync(
    path.join(dir, 'acme', 'regressions', 'req-1.json'),
    JSON.stringify({ id: 'req-1', request: {}, expect: { status: 200 } }),
  );
  const [set] = loadEvalSets(dir, dir, { EVAL_API_KEY_ACME: 'from-env' });
  t.is(set?.apiKey, 'from-env');
  t.deepEqual(
    set?.cases.map((c) => [c.id, c.file]),
    [
      ['one', 'acme/a.yaml'],
      ['req-1', path.join('acme', 'regressions', 'req-1.json')],
    ],
  );
  writeFileSync(
    path.join(dir, 'acme', 'b.yaml'),
    'id: one\nrequest: {}\nexpect: { status: 200 }\n',
  );
  t.throws(() => loadEvalSets(dir, dir, {}), { message: /case id one is used twice/ });
});

test("the repo's eval sets load, and cover every outcome kind the chain decides", (t) => {
  const sets = loadEvalSets(path.join(ROOT, 'evals'), ROOT, {});
  t.deepEqual(
    sets.map((s) => s.tenant),
    ['acme', 'globex'],
  );
  const kinds = ['persona', 'tools', 'tier', 'budget', 'retrieval', 'refusal', 'cache', 'answer'];
  for (const s of sets) {
    const tags = new Set(s.cases.flatMap((c) => c.tags));
    for (const k of kinds) t.true(tags.has(k), `${s.tenant} has a ${k} case`);
    t.true(s.knowledge.length > 0, `${s.tenant} has documents of its own`);
  }
  const acme = sets.find((s) => s.tenant === 'acme');
  t.true(
    acme?.cases.some((c) => c.tags.includes('downgrade') && c.state.budget_used !== undefined),
  );
  t.true(
    sets.every((s) => s.cases.some((c) => c.expect.answer?.json_schema || c.requires === 'real')),
  );
});

test('writeCaseFile: one validated case per file, read back as written, never overwritten', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'evals-write-'));
  mkdirSync(path.join(dir, 'acme'));
  writeFileSync(path.join(dir, 'acme', 'tenant.yaml'), 'api_key: k\n');
  const raw = {
    id: 'req-0f3a',
    description: 'captured request 0f3a',
    tags: ['regression'],
    request: { body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'a: "b" {{x}}' }] } },
    expect: { status: 200, upstream: { model: 'gpt-4o' } },
  };
  const file = writeCaseFile(dir, 'acme', raw);
  t.is(file, path.join(dir, 'acme', 'regressions', 'req-0f3a.yaml'));
  const [set] = loadEvalSets(dir, dir, {});
  t.deepEqual(
    set?.cases[0],
    parseCase(raw, 'acme', path.join('acme', 'regressions', 'req-0f3a.yaml'), -1),
  );
  t.throws(() => writeCaseFile(dir, 'acme', raw), { message: /exists already/ });
  t.throws(() => writeCaseFile(dir, 'acme', { ...raw, id: 'other', expect: {} }), {
    message: /expects nothing/,
  });
  t.throws(() => writeCaseFile(dir, '../etc', raw), { message: /not a tenant id/ });
});
