/**
 * Validation of `POST /v1/chat/completions` bodies the way OpenAI validates them: same
 * messages, params and codes for the cases a gateway test is likely to provoke.
 */
import { InvalidRequestError } from './openai-error';
import type { CountableMessage } from '../lib/tokens/tokenize';

export interface ChatRequest {
  model: string;
  messages: CountableMessage[];
  /** Text of the last `user` message ('' when there is none). */
  lastUserText: string;
  /** max_completion_tokens, else max_tokens, else undefined (no limit). */
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
}

const ROLES = ['system', 'assistant', 'user', 'function', 'tool', 'developer'];

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function invalidType(param: string, expected: string, got: unknown): InvalidRequestError {
  return new InvalidRequestError(
    `Invalid type for '${param}': expected ${expected}, but got ${typeName(got)} instead.`,
    param,
    'invalid_type',
  );
}

function missing(param: string): InvalidRequestError {
  return new InvalidRequestError(
    `Missing required parameter: '${param}'.`,
    param,
    'missing_required_parameter',
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text of a content value: a string, null, or an array of parts of which text parts count. */
function contentText(content: unknown, param: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content))
    throw invalidType(param, 'one of a string or array of objects', content);
  let text = '';
  content.forEach((part: unknown, i) => {
    const partParam = `${param}[${i}]`;
    if (!isRecord(part)) throw invalidType(partParam, 'an object', part);
    if (part.type === 'text') {
      if (typeof part.text !== 'string')
        throw invalidType(`${partParam}.text`, 'a string', part.text);
      text += part.text;
    }
  });
  return text;
}

function parseMessage(m: unknown, i: number): CountableMessage {
  const param = `messages[${i}]`;
  if (!isRecord(m)) throw invalidType(param, 'an object', m);
  if (m.role === undefined) throw missing(`${param}.role`);
  if (typeof m.role !== 'string' || !ROLES.includes(m.role)) {
    throw new InvalidRequestError(
      `Invalid value: ${JSON.stringify(m.role)}. Supported values are: ${ROLES.map((r) => `'${r}'`).join(', ')}.`,
      `${param}.role`,
      'invalid_value',
    );
  }
  // An assistant turn may carry only tool calls; every other role must say something.
  if (m.content === undefined && m.role !== 'assistant') throw missing(`${param}.content`);
  const message: CountableMessage = {
    role: m.role,
    text: contentText(m.content, `${param}.content`),
  };
  if (m.name !== undefined) {
    if (typeof m.name !== 'string') throw invalidType(`${param}.name`, 'a string', m.name);
    message.name = m.name;
  }
  return message;
}

function parseMaxTokens(body: Record<string, unknown>, param: string): number | undefined {
  const v = body[param];
  if (v === undefined || v === null) return undefined;
  if (!Number.isSafeInteger(v)) throw invalidType(param, 'an integer', v);
  if ((v as number) < 1) {
    throw new InvalidRequestError(
      `Invalid '${param}': integer below minimum value. Expected a value >= 1, but got ${String(v)} instead.`,
      param,
      'integer_below_min_value',
    );
  }
  return v as number;
}

export function parseChatRequest(body: Record<string, unknown>): ChatRequest {
  if (body.model === undefined || body.model === '') {
    throw new InvalidRequestError('you must provide a model parameter');
  }
  if (typeof body.model !== 'string') throw invalidType('model', 'a string', body.model);
  if (body.messages === undefined) throw missing('messages');
  if (!Array.isArray(body.messages)) {
    throw invalidType('messages', 'an array of objects', body.messages);
  }
  if (body.messages.length === 0) {
    throw new InvalidRequestError(
      "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      'messages',
      'empty_array',
    );
  }
  const messages = body.messages.map((m: unknown, i) => parseMessage(m, i));
  const maxTokens =
    parseMaxTokens(body, 'max_completion_tokens') ?? parseMaxTokens(body, 'max_tokens');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    throw invalidType('stream', 'a boolean', body.stream);
  }
  const stream = body.stream === true;
  const options = body.stream_options;
  if (options !== undefined && options !== null) {
    if (!stream) {
      throw new InvalidRequestError(
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        'stream_options',
        'invalid_value',
      );
    }
    if (!isRecord(options)) throw invalidType('stream_options', 'an object', options);
  }
  const includeUsage = isRecord(options) && options.include_usage === true;
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  return {
    model: body.model,
    messages,
    lastUserText: lastUser?.text ?? '',
    maxTokens,
    stream,
    includeUsage,
  };
}
