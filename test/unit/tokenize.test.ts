import test from 'ava';
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import {
  countChatPromptTokens,
  countTextTokens,
  decodeTokens,
  encodeText,
  encodingForModel,
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
