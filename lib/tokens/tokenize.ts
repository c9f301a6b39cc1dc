/**
 * Token counting with real BPE vocabularies (tiktoken, OpenAI's own Rust tokenizer compiled to
 * WebAssembly), so usage numbers in mock answers are the ones OpenAI would report and cost
 * metering can be tested against them.
 *
 * Why WebAssembly and not a pure-JS tokenizer: the vocabularies (o200k_base has 200,000
 * entries) live in the module's linear memory, outside the V8 heap, so the garbage collector
 * never traces them. With gpt-tokenizer they were 20 MB of live JS strings and Map entries in
 * every plugin server that estimates tokens: each full collection took 25 ms longer (a forced
 * full GC: 28.6 ms with o200k loaded, 3.6 ms without; 5.7 ms with tiktoken), and those pauses
 * were the worst of the victims' latency under a flood (docs/benchmarks.md).
 *
 * ASCII text is split and mostly counted in JavaScript (piece-count.ts: the same pattern, the
 * vocabulary's whole tokens in a typed-array table), with tiktoken counting only the pieces that
 * are not whole tokens: the same count, 4-6 times faster (the prompt's count is on every
 * request's path).
 *
 * Each encoding is built on first use (about 0.5-0.8 s, once per process); `loadEncodings`
 * does it ahead, from a plugin's constructor, so no request pays for it. Text is always
 * encoded as ordinary text: a prompt that contains `<|endoftext|>` counts those characters,
 * it does not throw (a pure-JS encoder's default) nor smuggle a special token in.
 */
import { get_encoding, type Tiktoken } from 'tiktoken';
import { PieceCounter } from './piece-count';

export type EncodingName = 'o200k_base' | 'cl100k_base';

const ENCODINGS = new Map<EncodingName, Tiktoken>();
/** Each encoding's counter for ASCII text (piece-count.ts), built with it. */
const COUNTERS = new Map<EncodingName, PieceCounter>();

function encoding(name: EncodingName): Tiktoken {
  let enc = ENCODINGS.get(name);
  if (!enc) {
    enc = get_encoding(name);
    ENCODINGS.set(name, enc);
    COUNTERS.set(name, new PieceCounter(enc, name));
  }
  return enc;
}

function counter(name: EncodingName): PieceCounter {
  encoding(name);
  return COUNTERS.get(name)!;
}

/** Builds the encodings now (a plugin's constructor), instead of on the first request. */
export function loadEncodings(
  names: readonly EncodingName[] = ['o200k_base', 'cl100k_base'],
): void {
  for (const n of names) encoding(n);
}

// OpenAI's current model families use o200k_base; everything older (gpt-4, gpt-3.5, the
// text-embedding-* models) and every unknown name falls back to cl100k_base.
const O200K_MODEL_PREFIXES = [
  'gpt-4o',
  'chatgpt-4o',
  'gpt-4.1',
  'gpt-4.5',
  'gpt-5',
  'o1',
  'o3',
  'o4',
];

export function encodingForModel(model: string): EncodingName {
  return O200K_MODEL_PREFIXES.some((p) => model.startsWith(p)) ? 'o200k_base' : 'cl100k_base';
}

function encodeOrdinary(text: string, model: string): Uint32Array {
  return encoding(encodingForModel(model)).encode_ordinary(text);
}

/**
 * BPE merging is quadratic in the length of one pre-tokenized piece, and a piece is a whole
 * run without a break: 100,000 × "a" took 21 s to count, 20,000 Chinese characters 4.6 s,
 * 50,000 spaces 4.2 s (1,000,000 × "a" made tiktoken trap) — one request holding the plugin
 * server, and every tenant's requests with it. So a run of more than `MAX_RUN` characters
 * without a break (or of breaks) is counted in `MAX_RUN`-character slices, and text past
 * `MAX_COUNTED` characters is not tokenized at all: each of its UTF-8 bytes counts as one
 * token, which no byte-level BPE can exceed. Ordinary prose is counted exactly; a sliced run
 * may be off by about a token per slice; the work is bounded (about 0.1 s for the worst text
 * measured, 64 KB of emoji) whatever the text's length.
 */
export const MAX_RUN = 256;
export const MAX_COUNTED = 64 * 1024;
const LONG_RUN = new RegExp(`\\S{${MAX_RUN + 1},}|\\s{${MAX_RUN + 1},}`, 'g');

function boundedCount(enc: PieceCounter, text: string): number {
  let head = text;
  let rest = 0;
  if (text.length > MAX_COUNTED) {
    const cut = sliceEnd(text, MAX_COUNTED);
    head = text.slice(0, cut);
    rest = Buffer.byteLength(text.slice(cut), 'utf8');
  }
  let count = 0;
  let from = 0;
  for (const m of head.matchAll(LONG_RUN)) {
    const at = m.index ?? 0;
    count += enc.count(head.slice(from, at));
    const run = m[0];
    for (let i = 0; i < run.length;) {
      const end = sliceEnd(run, i + MAX_RUN);
      count += enc.count(run.slice(i, end));
      i = end;
    }
    from = at + run.length;
  }
  return count + enc.count(head.slice(from)) + rest;
}

/** `end`, or one less when it would split a surrogate pair (a character outside the BMP). */
function sliceEnd(text: string, end: number): number {
  if (end >= text.length) return text.length;
  const c = text.charCodeAt(end - 1);
  return c >= 0xd800 && c <= 0xdbff ? end - 1 : end;
}

export function encodeText(text: string, model: string): number[] {
  return Array.from(encodeOrdinary(text, model));
}

export interface DecodedTokens {
  text: string;
  /** The tokens end inside a multi-byte character, whose bytes are not in `text`. */
  endsMidCharacter: boolean;
}

/**
 * Decodes tokens to text. A token sequence may end inside a multi-byte character: those
 * bytes are held back (not turned into U+FFFD), and `endsMidCharacter` says so. A decoder per
 * call, so no call's bytes leak into the next.
 */
export function decodeTokens(tokens: readonly number[], model: string): DecodedTokens {
  const bytes = encoding(encodingForModel(model)).decode(Uint32Array.from(tokens));
  const utf8 = new TextDecoder('utf-8');
  const text = utf8.decode(bytes, { stream: true });
  const heldBack = utf8.decode();
  return { text, endsMidCharacter: heldBack.length > 0 };
}

/** Tokens of `text`: exact for ordinary text, a bounded upper estimate for pathological runs. */
export function countTextTokens(text: string, model: string): number {
  return boundedCount(counter(encodingForModel(model)), text);
}

/** What the chat counter reads from a message: role, optional name, and its text. */
export interface CountableMessage {
  role: string;
  name?: string;
  text: string;
}

// From OpenAI's cookbook "How to count tokens with tiktoken" for gpt-3.5-turbo-0613 and
// later: each message costs 3 tokens of framing (<|im_start|>, <|im_sep|>, <|im_end|>) plus
// its role and content, a name costs one more, and every reply is primed with 3 tokens
// (<|im_start|>assistant<|im_sep|>). gpt-tokenizer's encodeChat produces the same count for
// messages without a name (asserted in the tests).
const TOKENS_PER_MESSAGE = 3;
const TOKENS_PER_NAME = 1;
const REPLY_PRIMING_TOKENS = 3;

export function countChatPromptTokens(
  messages: readonly CountableMessage[],
  model: string,
): number {
  const enc = counter(encodingForModel(model));
  let total = REPLY_PRIMING_TOKENS;
  for (const m of messages) {
    total += TOKENS_PER_MESSAGE + boundedCount(enc, m.role) + boundedCount(enc, m.text);
    if (m.name !== undefined) total += TOKENS_PER_NAME + boundedCount(enc, m.name);
  }
  return total;
}
