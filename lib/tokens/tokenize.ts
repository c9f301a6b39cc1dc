/**
 * Token counting with real BPE vocabularies (gpt-tokenizer), so usage numbers in mock answers
 * are the ones OpenAI would report and cost metering can be tested against them.
 *
 * The deep `cjs/encoding/*` imports pick one encoding each and load only its vocabulary; they
 * also resolve under the project's `node10` module resolution, which ignores `exports`.
 */
import * as cl100k from 'gpt-tokenizer/cjs/encoding/cl100k_base';
import * as o200k from 'gpt-tokenizer/cjs/encoding/o200k_base';
import { decoder as sharedUtf8Decoder } from 'gpt-tokenizer/cjs/BytePairEncodingCore';

export type EncodingName = 'o200k_base' | 'cl100k_base';

interface Encoding {
  encode(text: string): number[];
  decode(tokens: Iterable<number>): string;
}

const ENCODINGS: Record<EncodingName, Encoding> = {
  o200k_base: { encode: (t) => o200k.encode(t), decode: (t) => o200k.decode(t) },
  cl100k_base: { encode: (t) => cl100k.encode(t), decode: (t) => cl100k.decode(t) },
};

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

export function encodeText(text: string, model: string): number[] {
  return ENCODINGS[encodingForModel(model)].encode(text);
}

export interface DecodedTokens {
  text: string;
  /** The tokens end inside a multi-byte character, whose bytes are not in `text`. */
  endsMidCharacter: boolean;
}

/**
 * gpt-tokenizer 4.0.0 decodes through one module-wide TextDecoder in stream mode and never
 * flushes it, so tokens that end inside a character leak their bytes into the NEXT decode
 * call (which then starts with U+FFFD). Flushing before and after keeps each decode
 * independent, and what the flush returns tells whether bytes were held back.
 */
export function decodeTokens(tokens: readonly number[], model: string): DecodedTokens {
  sharedUtf8Decoder.decode();
  const text = ENCODINGS[encodingForModel(model)].decode(tokens);
  const heldBack = sharedUtf8Decoder.decode();
  return { text, endsMidCharacter: heldBack.length > 0 };
}

export function countTextTokens(text: string, model: string): number {
  return encodeText(text, model).length;
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
  const enc = ENCODINGS[encodingForModel(model)];
  let total = REPLY_PRIMING_TOKENS;
  for (const m of messages) {
    total += TOKENS_PER_MESSAGE + enc.encode(m.role).length + enc.encode(m.text).length;
    if (m.name !== undefined) total += TOKENS_PER_NAME + enc.encode(m.name).length;
  }
  return total;
}
