/**
 * The official OpenAI Node SDK (npm `openai`, pinned) against the front door of the repo's
 * kong.yml, configured with nothing but `baseURL` and `apiKey` (a tenant's key, which the SDK
 * sends as `Authorization: Bearer`): chat, streaming with usage, embeddings, models, a granted
 * tool round trip, and refusals landing in the SDK's typed exceptions with status, type and
 * code. Runs on the gateway GATEWAY names (harness by default, the real Kong 3.9.3 with
 * GATEWAY=kong). The Python SDK: test/sdk/openai-python.test.ts.
 *
 * retrieval-injector is left out: the example tenants' knowledge in the shared Milvus was
 * loaded under `npm start`'s secret, which this run does not have (its chunks would fail their
 * integrity check, rightly).
 */
import test from 'ava';
import OpenAI, { APIError } from 'openai';
import type { ReceivedRequest } from '../../mock-upstream/index';
import { Closers } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../helpers/kong-yml-door';

const ACME = 'acme-demo-key'; // kong.yml: plan pro (gpt-4o; tools search, calculator)
const GLOBEX = 'globex-demo-key'; // kong.yml: plan free (gpt-4o-mini; no tools)
const RATEY = 'ratey-sdk-key'; // this test's own free tenant, one request per minute

const closers = new Closers();
let door: KongYmlDoor | undefined;

test.before(async () => {
  door = await startKongYmlDoor(
    closers.add,
    (p) => {
      if (p.name === 'tenant-auth' && p.config) p.config.max_body_bytes = 65_536;
      if (p.name === 'tenant-ratelimit' && p.config)
        p.config.tenants = {
          ...(p.config.tenants as object),
          ratey: { requests_per_minute: 1, request_burst: 1 },
        };
    },
    [
      {
        username: 'ratey-app',
        custom_id: 'ratey',
        tags: ['plan:free'],
        keyauth_credentials: [{ key: RATEY }],
      },
    ],
    ['retrieval-injector'],
  );
});
test.after.always(() => closers.closeAll());

function client(apiKey: string, opts: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) {
  if (!door) throw new Error('the front door did not start');
  // Retries off: a refusal must reach the test as the SDK's exception, once.
  return new OpenAI({ baseURL: `${door.url}/v1`, apiKey, maxRetries: 0, ...opts });
}

function upstreamSaw(tag: string): ReceivedRequest | undefined {
  return door?.upstream.received.find((r) => r.rawBody.toString('utf8').includes(tag));
}

async function refusal(p: Promise<unknown>): Promise<APIError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof APIError) return e;
    throw e;
  }
  throw new Error('the request was not refused');
}

// Serial: one test changes the mock's failure knob, which the others must not meet.
test.serial(
  'chat: the tenant key as Bearer authenticates, the key never reaches the upstream',
  async (t) => {
    const tag = `chat-${Date.now()}`;
    const r = await client(ACME).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: `Say hello (${tag})` }],
    });
    t.is(r.object, 'chat.completion');
    t.is(typeof r.choices[0]?.message.content, 'string');
    t.true((r.usage?.prompt_tokens ?? 0) > 0);
    const seen = upstreamSaw(tag);
    t.truthy(seen, 'the request reached the upstream');
    const sent = JSON.stringify(seen?.headers ?? {});
    t.false(sent.includes(ACME), 'the tenant key is not forwarded upstream');
  },
);

test.serial('streaming: chunks arrive one by one and the last carries the usage', async (t) => {
  const stream = await client(GLOBEX).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: `Count to five (${Date.now()})` }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  t.true(chunks.length > 2, `${chunks.length} chunks`);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  t.true(text.length > 0);
  const last = chunks.at(-1);
  t.deepEqual(last?.choices, []);
  t.true((last?.usage?.completion_tokens ?? 0) > 0, 'usage arrives with include_usage');
});

test.serial('embeddings', async (t) => {
  const r = await client(GLOBEX).embeddings.create({
    model: 'text-embedding-3-small',
    input: ['the front door', 'of many tenants'],
  });
  t.is(r.data.length, 2);
  t.true((r.data[0]?.embedding.length ?? 0) > 0);
  t.is(typeof r.data[1]?.embedding[0], 'number');
});

test.serial("models: a list the SDK parses, holding the tenant's plan model", async (t) => {
  const ids: string[] = [];
  for await (const m of client(ACME).models.list()) ids.push(m.id);
  t.true(ids.includes('gpt-4o'), ids.join(', '));
});

test.serial(
  'tools: a granted tool goes upstream, a forbidden one is stripped, the round trip completes',
  async (t) => {
    const tag = `tools-${Date.now()}`;
    const tool = (name: string): OpenAI.Chat.Completions.ChatCompletionTool => ({
      type: 'function',
      function: { name, parameters: { type: 'object', properties: { q: { type: 'string' } } } },
    });
    const acme = client(ACME);
    const first = await acme.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: `Search the docs (${tag})` }],
      tools: [tool('search'), tool('shell')],
    });
    t.is(first.object, 'chat.completion');
    const body = JSON.parse(upstreamSaw(tag)?.rawBody.toString('utf8') ?? '{}') as {
      tools?: Array<{ function: { name: string } }>;
    };
    t.deepEqual(
      body.tools?.map((x) => x.function.name),
      ['search'],
      'search is granted to pro; shell is not',
    );
    // The tool's answer goes back as the next turn.
    const second = await acme.chat.completions.create({
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: `Search the docs (${tag})` },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'search', arguments: '{"q":"x"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'found: the answer' },
      ],
      tools: [tool('search')],
    });
    t.is(typeof second.choices[0]?.message.content, 'string');
  },
);

test.serial('no key: AuthenticationError 401', async (t) => {
  const e = await refusal(
    client('unused', { defaultHeaders: { Authorization: null } }).models.list(),
  );
  t.true(e instanceof OpenAI.AuthenticationError, e.constructor.name);
  t.is(e.status, 401);
  t.is(typeof e.type, 'string', "Kong's own error carries a type");
  t.truthy(e.message);
});

test.serial('wrong key: AuthenticationError 401', async (t) => {
  const e = await refusal(
    client('not-a-key').chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    }),
  );
  t.true(e instanceof OpenAI.AuthenticationError, e.constructor.name);
  t.is(e.status, 401);
  t.is(typeof e.type, 'string');
});

test.serial('two different keys: AuthenticationError 401 conflicting_credentials', async (t) => {
  const e = await refusal(client(ACME, { defaultHeaders: { apikey: GLOBEX } }).models.list());
  t.true(e instanceof OpenAI.AuthenticationError, e.constructor.name);
  t.is(e.code, 'conflicting_credentials');
  t.is(e.type, 'authentication_error');
});

test.serial(
  'a tool the plan does not grant, named in tool_choice: PermissionDeniedError 403',
  async (t) => {
    const e = await refusal(
      client(GLOBEX).chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'function', function: { name: 'search', parameters: { type: 'object' } } }],
        tool_choice: { type: 'function', function: { name: 'search' } },
      }),
    );
    t.true(e instanceof OpenAI.PermissionDeniedError, e.constructor.name);
    t.is(e.status, 403);
    t.is(typeof e.code, 'string');
    t.is(typeof e.type, 'string');
  },
);

test.serial('a body over the limit: APIError 413 with type and code', async (t) => {
  const e = await refusal(
    client(GLOBEX).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x'.repeat(100_000) }],
    }),
  );
  t.is(e.status, 413);
  t.is(typeof e.code, 'string');
  t.is(typeof e.type, 'string');
});

test.serial('a malformed request: BadRequestError 400', async (t) => {
  const e = await refusal(
    client(GLOBEX).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: 'not a list' as unknown as OpenAI.Chat.Completions.ChatCompletionMessageParam[],
    }),
  );
  t.true(e instanceof OpenAI.BadRequestError, e.constructor.name);
  t.is(e.status, 400);
  t.is(typeof e.type, 'string');
});

test.serial('over the rate limit: RateLimitError 429', async (t) => {
  const ratey = client(RATEY);
  const ask = () =>
    ratey.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `hi ${Date.now()}` }],
    });
  await ask();
  const e = await refusal(ask());
  t.true(e instanceof OpenAI.RateLimitError, e.constructor.name);
  t.is(e.status, 429);
  t.is(typeof e.code, 'string');
  t.truthy(e.headers?.get('retry-after'), 'Retry-After says when to come back');
});

test.serial('an upstream failure: InternalServerError with status and type', async (t) => {
  if (!door) throw new Error('the front door did not start');
  door.upstream.configure({
    failure: { mode: 'status', status: 503, count: 1, pathPrefix: '/v1/chat' },
  });
  try {
    const e = await refusal(
      client(GLOBEX).chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `fail ${Date.now()}` }],
      }),
    );
    t.true(e instanceof OpenAI.InternalServerError, e.constructor.name);
    t.true((e.status ?? 0) >= 500);
    t.is(typeof e.type, 'string');
  } finally {
    door.upstream.configure({ failure: null });
  }
});
