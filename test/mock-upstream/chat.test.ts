import test from 'ava';
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import { postJson, startMock, type ChatCompletion } from './_helpers';

const chat = [
  { role: 'system', content: 'You are a terse assistant for ACME support.' },
  { role: 'user', content: 'How do I reset my password?' },
  { role: 'assistant', content: 'Use the account page.' },
  { role: 'user', content: 'And where is the account page, exactly?' },
] as const;

test('answers deterministically from the last user message and echoes the model', async (t) => {
  const mock = await startMock(t);
  const a = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o-mini',
    messages: chat,
  });
  const b = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o-mini',
    messages: chat,
  });
  t.is(a.status, 200);
  t.regex(a.headers.get('content-type') ?? '', /^application\/json/);
  const body = a.body as ChatCompletion;
  t.is(body.object, 'chat.completion');
  t.is(body.model, 'gpt-4o-mini');
  t.is(body.choices.length, 1);
  t.is(body.choices[0]?.message.role, 'assistant');
  t.is(body.choices[0]?.message.content, 'mock answer to: And where is the account page, exactly?');
  t.is(body.choices[0]?.finish_reason, 'stop');
  t.is((b.body as ChatCompletion).choices[0]?.message.content, body.choices[0]?.message.content);
  t.not((b.body as ChatCompletion).id, body.id);
});

test('different questions get different answers', async (t) => {
  const mock = await startMock(t);
  const ask = async (q: string): Promise<string | undefined> =>
    (
      (
        await postJson(`${mock.url}/v1/chat/completions`, {
          model: 'gpt-4o',
          messages: [{ role: 'user', content: q }],
        })
      ).body as ChatCompletion
    ).choices[0]?.message.content;
  t.not(await ask('What is Kong?'), await ask('What is Milvus?'));
});

test('quotes at most the first 200 characters of the question', async (t) => {
  const mock = await startMock(t);
  const long = 'x'.repeat(500);
  const res = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages: [{ role: 'user', content: long }],
  });
  t.is(
    (res.body as ChatCompletion).choices[0]?.message.content,
    `mock answer to: ${'x'.repeat(200)}`,
  );
});

test('usage counts the prompt as gpt-tokenizer encodeChat does, per model encoding', async (t) => {
  const mock = await startMock(t);
  for (const [model, enc] of [
    ['gpt-4o', o200k],
    ['gpt-4', cl100k],
  ] as const) {
    const res = await postJson(`${mock.url}/v1/chat/completions`, { model, messages: chat });
    const body = res.body as ChatCompletion;
    const content = body.choices[0]?.message.content ?? '';
    t.is(body.usage.prompt_tokens, enc.encodeChat(chat, model).length, model);
    t.is(body.usage.completion_tokens, enc.encode(content).length, model);
    t.is(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens);
  }
  // The two encodings really differ on this text, so picking the wrong one would show.
  const text = chat.map((m) => m.content).join(' ') + ' Ünïcödé 日本語の文章';
  t.not(o200k.encode(text).length, cl100k.encode(text).length);
});

test('a name costs one token plus its own tokens; text parts count as content', async (t) => {
  const mock = await startMock(t);
  const plain = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'hello there' }],
  });
  const named = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages: [{ role: 'user', name: 'alice', content: [{ type: 'text', text: 'hello there' }] }],
  });
  const p = (plain.body as ChatCompletion).usage.prompt_tokens;
  const n = (named.body as ChatCompletion).usage.prompt_tokens;
  t.is(n, p + 1 + o200k.encode('alice').length);
  t.is((named.body as ChatCompletion).choices[0]?.message.content, 'mock answer to: hello there');
});

test('max_tokens truncates the completion and finishes with "length"', async (t) => {
  const mock = await startMock(t);
  const messages = [{ role: 'user', content: 'Tell me everything about rate limiting.' }];
  const full =
    (
      (await postJson(`${mock.url}/v1/chat/completions`, { model: 'gpt-4o', messages }))
        .body as ChatCompletion
    ).choices[0]?.message.content ?? '';
  const res = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages,
    max_tokens: 4,
  });
  const body = res.body as ChatCompletion;
  t.is(body.choices[0]?.finish_reason, 'length');
  t.is(body.usage.completion_tokens, 4);
  t.is(body.choices[0]?.message.content, o200k.decode(o200k.encode(full).slice(0, 4)));
  t.true(full.startsWith(body.choices[0]?.message.content ?? '#'));
});

test('max_completion_tokens wins over max_tokens; a limit above the answer changes nothing', async (t) => {
  const mock = await startMock(t);
  const messages = [{ role: 'user', content: 'short' }];
  const both = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages,
    max_tokens: 100,
    max_completion_tokens: 2,
  });
  t.is((both.body as ChatCompletion).usage.completion_tokens, 2);
  const roomy = await postJson(`${mock.url}/v1/chat/completions`, {
    model: 'gpt-4o',
    messages,
    max_tokens: 1000,
  });
  t.is((roomy.body as ChatCompletion).choices[0]?.finish_reason, 'stop');
  t.is((roomy.body as ChatCompletion).choices[0]?.message.content, 'mock answer to: short');
});
