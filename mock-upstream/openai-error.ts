/**
 * OpenAI-style error answers. OpenAI always answers errors with
 * `{"error":{"message","type","param","code"}}`; clients and the gateway's plugins parse that
 * shape, so every refusal of the mock uses it too.
 */
import type { ServerResponse } from 'node:http';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** A request the endpoint refuses; thrown by validators, answered by the server. */
export class InvalidRequestError extends Error {
  override readonly name = 'InvalidRequestError';
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly status = 400,
  ) {
    super(message);
  }
}

export function isInvalidRequestError(e: unknown): e is InvalidRequestError {
  return e instanceof InvalidRequestError;
}

export function errorBody(
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

/** The error `type` OpenAI uses for a status, for injected and generic failures. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return 'invalid_authentication';
  if (status === 429) return 'rate_limit_exceeded';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': String(payload.length),
    ...headers,
  });
  res.end(payload);
}

export function sendInvalidRequest(res: ServerResponse, e: InvalidRequestError): void {
  sendJson(res, e.status, errorBody(e.message, 'invalid_request_error', e.param, e.code));
}
