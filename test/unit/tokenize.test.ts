import test from 'ava';
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import {
  countChatPromptTokens,
  countTextTokens,
  decodeTokens,
  encodeText,
  encodingForModel,
  MAX_COUNTED,
  MAX_RUN,
} from '../../lib/tokens/tokenize';

test('picks o200k_base for current model families and cl100k_base otherwise', (t) => {
  for (const m of ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'o1-mini', 'gpt-4.1-nano', 'o3', 'gpt-5']) {
    t.is(encodingForModel(m), 'o200k_base', m);
  }
  for (const m of ['gpt-4', 'gpt-4-turbo', 'gpt-3.5-turbo', 'text-embedding-3-small', 'llama-3']) {
    t.is(encodingForModel(m), 'cl100k_base', m);
  }
});

test('text counts equal the tokenizer encodings', (t) => {
  const text = 'Multi-tenant gateways meter tokens: 日本語, émojis 🎉 and code `x => x`.';
  t.is(countTextTokens(text, 'gpt-4o'), o200k.encode(text).length);
  t.is(countTextTokens(text, 'gpt-3.5-turbo'), cl100k.encode(text).length);
});

test('chat counts equal encodeChat for messages without names', (t) => {
  const chat = [
    { role: 'system', content: 'Answer in French.' },
    { role: 'user', content: 'What is a partition key?' },
  ] as const;
  const countable = chat.map((m) => ({ role: m.role, text: m.content }));
  t.is(countChatPromptTokens(countable, 'gpt-4o'), o200k.encodeChat(chat, 'gpt-4o').length);
  t.is(countChatPromptTokens(countable, 'gpt-4'), cl100k.encodeChat(chat, 'gpt-4').length);
});

test('decoding tokens that end inside a character does not spill into the next decode', (t) => {
  const tokens = o200k.encode('tea ☕ time');
  const cut = tokens.findIndex(
    (_, i) => decodeTokens(tokens.slice(0, i + 1), 'gpt-4o').endsMidCharacter,
  );
  t.true(cut >= 0, 'the cup is split across tokens');
  t.true(decodeTokens(tokens.slice(0, cut + 1), 'gpt-4o').endsMidCharacter);
  t.deepEqual(decodeTokens(tokens, 'gpt-4o'), { text: 'tea ☕ time', endsMidCharacter: false });
});

test('text that spells out special tokens is encoded as ordinary text, as the reference does', (t) => {
  const text = 'a <|endoftext|> b <|im_start|>user<|im_sep|> c <|fim_prefix|> d';
  for (const [model, ref] of [
    ['gpt-4o-mini', o200k],
    ['gpt-4', cl100k],
  ] as const) {
    // gpt-tokenizer throws here unless told the special tokens are ordinary text.
    t.throws(() => ref.encode(text));
    const reference = ref.encode(text, { allowedSpecial: new Set(), disallowedSpecial: new Set() });
    t.deepEqual(encodeText(text, model), reference, model);
    t.is(countTextTokens(text, model), reference.length);
    t.is(decodeTokens(encodeText(text, model), model).text, text);
  }
});

test('a run without a break is counted in slices: bounded work, never below the exact count', (t) => {
  // Unsliced, BPE merging is quadratic in a run: 100,000 x "a" took 21 s to count and
  // 1,000,000 x "a" made tiktoken trap (RuntimeError: unreachable). This test would time out.
  for (const model of ['gpt-4o-mini', 'gpt-4']) {
    const ref = model === 'gpt-4' ? cl100k : o200k;
    // Short enough to count exactly with the reference: the slices add nothing here.
    const a = 'a'.repeat(MAX_RUN * 5 + 17);
    t.true(countTextTokens(a, model) >= ref.encode(a).length, model);
    t.true(countTextTokens(a, model) <= ref.encode(a).length + 5, model);
    const cjk = '这是一个测试'.repeat(200);
    t.true(
      Math.abs(countTextTokens(cjk, model) - ref.encode(cjk).length) <= cjk.length / MAX_RUN + 1,
    );
    // Long runs of letters, of spaces, of CJK, of emoji: a count, at once.
    for (const text of [
      'a'.repeat(100_000),
      ' '.repeat(50_000),
      '这是一个测试'.repeat(3400),
      '\u{1F600}'.repeat(30_000),
    ]) {
      const n = countTextTokens(text, model);
      t.true(n > 0 && n <= Buffer.byteLength(text, 'utf8'), `${n} tokens for ${text.length} chars`);
    }
  }
});

test('text past MAX_COUNTED characters counts one token per UTF-8 byte, the most BPE can give', (t) => {
  const head = 'word '.repeat(Math.ceil(MAX_COUNTED / 5)).slice(0, MAX_COUNTED);
  t.is(head.length, MAX_COUNTED);
  const headCount = countTextTokens(head, 'gpt-4o-mini');
  t.is(headCount, o200k.encode(head).length, 'up to the limit: exact');
  const tail = 'é'.repeat(1000); // 2 bytes each
  t.is(countTextTokens(head + tail, 'gpt-4o-mini'), headCount + 2000);
  // 1,000,000 x "a": no trap, and an upper bound.
  const huge = 'a'.repeat(1_000_000);
  const n = countTextTokens(huge, 'gpt-4o-mini');
  t.true(n >= 1_000_000 / 8 && n <= 1_000_000, String(n));
});
