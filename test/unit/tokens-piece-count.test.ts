import test from 'ava';
import { get_encoding } from 'tiktoken';
import { PieceCounter, pieceCountStats } from '../../lib/tokens/piece-count';
import { countChatPromptTokens, countTextTokens } from '../../lib/tokens/tokenize';

const encodings = {
  o200k_base: get_encoding('o200k_base'),
  cl100k_base: get_encoding('cl100k_base'),
} as const;
const counters = {
  o200k_base: new PieceCounter(encodings.o200k_base, 'o200k_base'),
  cl100k_base: new PieceCounter(encodings.cl100k_base, 'cl100k_base'),
};

/** A seeded generator, so that a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

// The characters tiktoken's patterns treat specially: each kind of ASCII whitespace (and
// U+001C-U+001F, which are not White_Space), apostrophes before the contractions' letters in
// both cases, digits (runs of 1-3), slashes (o200k keeps them with a newline), punctuation.
const ALPHABET =
  ' \n\t\r\v\f  \x1c\x1f\x00\'"sStTmMdDrReEvVlLaZz!?.,/\\-_=+0123456789()[]{}<>:;`~#*&^%$@|';
const WORDS = [
  "don't",
  "We'LL",
  'HTTPServer',
  'camelCase',
  'ALLCAPS',
  'x86_64',
  '3.14159',
  'https://a.b/c?d=1',
  '    indented',
  'tabs\there',
  'line\r\nbreak',
  '\n\n\n',
  'a  b',
  'a   b',
  '1234567',
  "it's",
  "THEY'RE",
  "I'M",
  "you'VE",
  "she'd",
  '--flag',
  '<|endoftext|>',
  'e.g.',
  '...',
  '// comment',
];

function randomText(next: () => number): string {
  let s = '';
  const parts = 1 + Math.floor(next() * 12);
  for (let p = 0; p < parts; p++) {
    if (next() < 0.4) s += WORDS[Math.floor(next() * WORDS.length)];
    else {
      const len = 1 + Math.floor(next() * 20);
      for (let i = 0; i < len; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)];
    }
  }
  return s;
}

for (const name of ['o200k_base', 'cl100k_base'] as const) {
  test(`${name}: counts equal tiktoken's on 20,000 random texts of the pattern's special characters`, (t) => {
    const next = rng(name === 'o200k_base' ? 1 : 2);
    const enc = encodings[name];
    const pieces = counters[name];
    let differing = 0;
    let first = '';
    for (let i = 0; i < 20000; i++) {
      const text = randomText(next);
      if (pieces.count(text) !== enc.encode_ordinary(text).length) {
        differing++;
        first ||= JSON.stringify(text);
      }
    }
    t.is(differing, 0, `first differing text: ${first}`);
  });

  test(`${name}: counts equal tiktoken's on prose, code and non-ASCII text`, (t) => {
    const enc = encodings[name];
    const pieces = counters[name];
    const texts = [
      'Multi-tenant gateways meter tokens before the expensive call, never after.',
      'function add(a, b) {\n  return a + b; // sum\n}\n\n',
      'Résumé: naïve café, 日本語 and emoji 🎉 go to tiktoken whole.',
      'A sentence with a tail of spaces   ',
      '   ',
      '',
      'a'.repeat(300),
      "The tenant's partition key isn't optional; it's the third lock.\r\n",
    ];
    for (const text of texts) t.is(pieces.count(text), enc.encode_ordinary(text).length, text);
  });
}

test('whole tokens of the vocabulary are answered from the table, other pieces by tiktoken', (t) => {
  const pieces = counters.o200k_base;
  t.true(pieces.isToken(' the'));
  t.true(pieces.isToken(' request'));
  t.true(pieces.isToken(','));
  // Not single tokens of o200k_base:
  t.false(pieces.isToken(' xqzvbnmwpl'));
  t.false(pieces.isToken('the quick'));
  t.true(pieces.size > 100_000, `${pieces.size} whole-token ASCII pieces`);
});

test('the estimate counts ordinary prose mostly from the table, not in WebAssembly', (t) => {
  const prose =
    'Every token is metered and attributed to a tenant, and budgets are enforced before the ' +
    'expensive call, with graceful downgrade near the cap and a clear error at the hard cap.';
  const before = { ...pieceCountStats };
  const n = countTextTokens(prose, 'gpt-4o');
  t.is(n, encodings.o200k_base.encode_ordinary(prose).length);
  const fromTable = pieceCountStats.fromTable - before.fromTable;
  const wasmCalls =
    pieceCountStats.spans - before.spans + (pieceCountStats.wholeTexts - before.wholeTexts);
  t.true(fromTable >= n - 2, `${fromTable} of ${n} pieces from the table`);
  t.true(wasmCalls <= 2, `${wasmCalls} calls into tiktoken`);
});

test("a chat's count is unchanged: framing, roles and text", (t) => {
  const messages = [
    { role: 'system', text: 'You are the support assistant of Acme.' },
    { role: 'user', text: "What's a partition key, and why can't I filter on it myself?" },
  ];
  let expected = 3;
  for (const m of messages) {
    expected +=
      3 +
      encodings.o200k_base.encode_ordinary(m.role).length +
      encodings.o200k_base.encode_ordinary(m.text).length;
  }
  t.is(countChatPromptTokens(messages, 'gpt-4o-mini'), expected);
});
