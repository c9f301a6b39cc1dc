import test from 'ava';
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import { getJson, postJson, startMock, type EmbeddingList } from './_helpers';

const norm = (v: number[]): number => Math.hypot(...v);
const cosine = (a: number[], b: number[]): number =>
  a.reduce((s, x, i) => s + x * (b[i] ?? 0), 0) / (norm(a) * norm(b));

async function embed(url: string, body: object): Promise<EmbeddingList> {
  const res = await postJson(`${url}/v1/embeddings`, { model: 'text-embedding-3-small', ...body });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as EmbeddingList;
}

const vectorOf = (list: EmbeddingList, i: number): number[] => list.data[i]?.embedding as number[];

test('one string gives one unit-norm vector of the default 64 dimensions', async (t) => {
  const mock = await startMock(t);
  const list = await embed(mock.url, { input: 'tenant isolation in an AI gateway' });
  t.is(list.object, 'list');
  t.is(list.model, 'text-embedding-3-small');
  t.is(list.data.length, 1);
  t.is(list.data[0]?.object, 'embedding');
  t.is(list.data[0]?.index, 0);
  const v = vectorOf(list, 0);
  t.is(v.length, 64);
  t.true(Math.abs(norm(v) - 1) < 1e-9);
});

test('vectors are deterministic, and texts sharing words are closer than unrelated ones', async (t) => {
  const mock = await startMock(t, { embeddingDim: 256 });
  const list = await embed(mock.url, {
    input: [
      'how do I reset my account password',
      'how can I reset the password of my account',
      'milvus partition keys scale to millions of tenants',
    ],
  });
  t.deepEqual(
    list.data.map((d) => d.index),
    [0, 1, 2],
  );
  const [a, b, c] = [vectorOf(list, 0), vectorOf(list, 1), vectorOf(list, 2)];
  t.true(cosine(a, b) > 0.5, `similar texts: ${cosine(a, b)}`);
  t.true(Math.abs(cosine(a, c)) < cosine(a, b), 'unrelated texts are further apart');
  const again = await embed(mock.url, { input: 'how do I reset my account password' });
  t.deepEqual(vectorOf(again, 0), a);
});

test('dimension comes from the embeddingDim knob, or from the request', async (t) => {
  const mock = await startMock(t);
  mock.configure({ embeddingDim: 16 });
  t.is(vectorOf(await embed(mock.url, { input: 'x' }), 0).length, 16);
  t.is(vectorOf(await embed(mock.url, { input: 'x', dimensions: 8 }), 0).length, 8);
});

test('usage counts tokens with the embedding model encoding; token arrays count their length', async (t) => {
  const mock = await startMock(t);
  const texts = ['Kong routes AI traffic.', 'Ünïcödé text, 日本語'];
  const list = await embed(mock.url, { input: texts });
  const expected = texts.reduce((n, s) => n + cl100k.encode(s).length, 0);
  t.is(list.usage.prompt_tokens, expected);
  t.is(list.usage.total_tokens, expected);

  const tokens = await embed(mock.url, {
    input: [
      [1, 2, 3],
      [4, 5],
    ],
  });
  t.is(tokens.data.length, 2);
  t.is(tokens.usage.prompt_tokens, 5);
  const single = await embed(mock.url, { input: [7, 8, 9, 10] });
  t.is(single.data.length, 1, 'a flat integer array is one tokenized input');
  t.is(single.usage.prompt_tokens, 4);
});

test('encoding_format base64 carries the same vector as little-endian float32', async (t) => {
  const mock = await startMock(t);
  const floats = vectorOf(await embed(mock.url, { input: 'same text' }), 0);
  const b64 = await embed(mock.url, { input: 'same text', encoding_format: 'base64' });
  const buf = Buffer.from(b64.data[0]?.embedding as string, 'base64');
  t.is(buf.length, floats.length * 4);
  floats.forEach((x, i) => t.true(Math.abs(buf.readFloatLE(i * 4) - x) < 1e-6));
});

test('GET /v1/models lists models; one can be retrieved, an unknown one is 404', async (t) => {
  const mock = await startMock(t);
  const list = await getJson(`${mock.url}/v1/models`);
  t.is(list.status, 200);
  const ids = (list.body as { data: Array<{ id: string; object: string }> }).data.map((m) => m.id);
  t.true(ids.includes('gpt-4o'));
  t.true(ids.includes('text-embedding-3-small'));
  const one = await getJson(`${mock.url}/v1/models/gpt-4o`);
  t.like(one.body, { id: 'gpt-4o', object: 'model' });
  const none = await getJson(`${mock.url}/v1/models/nope`);
  t.is(none.status, 404);
  t.like(none.body, { error: { code: 'model_not_found' } });
});
