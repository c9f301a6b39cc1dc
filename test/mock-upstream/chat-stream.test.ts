import test from 'ava';
import { postJson, startMock, type ChatChunk, type ChatCompletion } from './_helpers';

interface Stream {
  contentType: string | null;
  raw: string;
  events: string[];
}

async function streamChat(url: string, body: object): Promise<Stream> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const raw = await res.text();
  return { contentType: res.headers.get('content-type'), raw, events: parseSse(raw) };
}

/** Splits an SSE body into the data of its events, asserting OpenAI's framing on the way. */
function parseSse(raw: string): string[] {
  if (!raw.endsWith('\n\n')) throw new Error('stream does not end with a blank line');
  return raw
    .slice(0, -2)
    .split('\n\n')
    .map((event) => {
      if (!event.startsWith('data: ') || event.includes('\n')) {
        throw new Error(`not a single data line: ${JSON.stringify(event)}`);
      }
      return event.slice('data: '.length);
    });
}

const chunksOf = (s: Stream): ChatChunk[] =>
  s.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as ChatChunk);

const question = {
  model: 'gpt-4o',
  messages: [{ role: 'user', content: 'Stream me ☕ 日本語 🎉 please' }],
};

test('streams role, several content deltas and a finish chunk, then [DONE]', async (t) => {
  const mock = await startMock(t);
  const s = await streamChat(mock.url, question);
  t.regex(s.contentType ?? '', /^text\/event-stream/);
  t.is(s.events.at(-1), '[DONE]');
  t.is(s.events.filter((e) => e === '[DONE]').length, 1);

  const chunks = chunksOf(s);
  t.true(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'gpt-4o'));
  t.is(chunks[0]?.choices[0]?.delta.role, 'assistant');
  const contentChunks = chunks.slice(1, -1);
  t.true(contentChunks.length > 3, 'content arrives in several chunks');
  t.true(contentChunks.every((c) => c.choices[0]?.finish_reason === null));
  t.is(chunks.at(-1)?.choices[0]?.finish_reason, 'stop');
  t.deepEqual(chunks.at(-1)?.choices[0]?.delta, {});
  t.true(
    chunks.every((c) => !('usage' in c)),
    'no usage field without include_usage',
  );

  const streamed = contentChunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  const plain = await postJson(`${mock.url}/v1/chat/completions`, question);
  t.is(streamed, (plain.body as ChatCompletion).choices[0]?.message.content ?? '#');
  t.false(streamed.includes('\uFFFD'), 'multi-byte characters are never split');
});

test('include_usage adds a last chunk with empty choices and the usage', async (t) => {
  const mock = await startMock(t);
  const s = await streamChat(mock.url, { ...question, stream_options: { include_usage: true } });
  const chunks = chunksOf(s);
  const last = chunks.at(-1);
  t.deepEqual(last?.choices, []);
  const plain = await postJson(`${mock.url}/v1/chat/completions`, question);
  t.deepEqual(last?.usage, (plain.body as ChatCompletion).usage);
  t.true(
    chunks.slice(0, -1).every((c) => c.usage === null),
    'earlier chunks carry usage: null',
  );
  t.is(chunks.at(-2)?.choices[0]?.finish_reason, 'stop');
});

test('a streamed answer honours max_tokens and finishes with "length"', async (t) => {
  const mock = await startMock(t);
  const s = await streamChat(mock.url, {
    ...question,
    max_tokens: 3,
    stream_options: { include_usage: true },
  });
  const chunks = chunksOf(s);
  t.is(chunks.at(-2)?.choices[0]?.finish_reason, 'length');
  t.is(chunks.at(-1)?.usage?.completion_tokens, 3);
  const streamed = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  t.is(streamed, 'mock answer to');
});

test('streamChunkDelayMs spreads the chunks over separate writes', async (t) => {
  const mock = await startMock(t, { streamChunkDelayMs: 20 });
  const res = await fetch(`${mock.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ ...question, stream: true }),
  });
  let reads = 0;
  let raw = '';
  const decoder = new TextDecoder();
  for await (const part of res.body ?? []) {
    reads += 1;
    raw += decoder.decode(part as Uint8Array, { stream: true });
  }
  t.true(reads > 3, `expected several network reads, got ${reads}`);
  t.is(parseSse(raw).at(-1), '[DONE]');
});
