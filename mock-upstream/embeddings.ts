/**
 * `POST /v1/embeddings`: OpenAI's request and response shapes, vectors from the feature-hashing
 * embedder (see hashed-embedding.ts: deterministic, not semantic), usage from a real tokenizer.
 */
import type { Endpoint } from './endpoint';
import { embedText, embedTokenIds } from './hashed-embedding';
import { sendJsonAnswer } from './json-answer';
import { InvalidRequestError } from './openai-error';
import { requireJsonObject } from './request-body';
import { countTextTokens } from '../lib/tokens/tokenize';

type EmbeddingInput = { text: string } | { tokens: number[] };

const MAX_DIMENSIONS = 8192;

function invalidInput(): InvalidRequestError {
  return new InvalidRequestError(
    "Invalid type for 'input': expected a string, an array of strings, an array of integers or an array of arrays of integers.",
    'input',
    'invalid_type',
  );
}

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((t) => Number.isSafeInteger(t) && t >= 0);
}

function parseInputs(input: unknown): EmbeddingInput[] {
  if (input === undefined) {
    throw new InvalidRequestError(
      "Missing required parameter: 'input'.",
      'input',
      'missing_required_parameter',
    );
  }
  const emptyString = new InvalidRequestError(
    "Invalid 'input': empty string. Expected a non-empty string.",
    'input',
    'invalid_value',
  );
  if (typeof input === 'string') {
    if (input.length === 0) throw emptyString;
    return [{ text: input }];
  }
  if (!Array.isArray(input) || input.length === 0) throw invalidInput();
  if (isTokenArray(input)) return [{ tokens: input }];
  return input.map((item: unknown): EmbeddingInput => {
    if (typeof item === 'string') {
      if (item.length === 0) throw emptyString;
      return { text: item };
    }
    if (isTokenArray(item)) return { tokens: item };
    throw invalidInput();
  });
}

function parseDimensions(v: unknown, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (!Number.isSafeInteger(v) || (v as number) < 1 || (v as number) > MAX_DIMENSIONS) {
    throw new InvalidRequestError(
      `Invalid 'dimensions': expected an integer 1..${MAX_DIMENSIONS}, got ${JSON.stringify(v)}.`,
      'dimensions',
      'invalid_value',
    );
  }
  return v as number;
}

function parseEncodingFormat(v: unknown): 'float' | 'base64' {
  if (v === undefined || v === null || v === 'float') return 'float';
  if (v === 'base64') return 'base64';
  throw new InvalidRequestError(
    `Invalid value: ${JSON.stringify(v)}. Supported values are: 'float' and 'base64'.`,
    'encoding_format',
    'invalid_value',
  );
}

/** Float32 little-endian bytes in base64, which is what OpenAI sends for `base64`. */
function toBase64(vector: readonly number[]): string {
  const buf = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf.toString('base64');
}

export const embeddings: Endpoint = async (ctx) => {
  const body = requireJsonObject(ctx.rawBody);
  if (body.model === undefined || body.model === '') {
    throw new InvalidRequestError('you must provide a model parameter');
  }
  if (typeof body.model !== 'string') {
    throw new InvalidRequestError(
      "Invalid type for 'model': expected a string.",
      'model',
      'invalid_type',
    );
  }
  const model = body.model;
  const inputs = parseInputs(body.input);
  const dim = parseDimensions(body.dimensions, ctx.knobs.embeddingDim);
  const format = parseEncodingFormat(body.encoding_format);

  let promptTokens = 0;
  const data = inputs.map((input, index) => {
    const isText = 'text' in input;
    promptTokens += isText ? countTextTokens(input.text, model) : input.tokens.length;
    const vector = isText ? embedText(input.text, dim) : embedTokenIds(input.tokens, dim);
    return {
      object: 'embedding',
      index,
      embedding: format === 'base64' ? toBase64(vector) : vector,
    };
  });
  sendJsonAnswer(
    ctx,
    {
      object: 'list',
      data,
      model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    },
    { 'x-request-id': ctx.requestId },
  );
};
