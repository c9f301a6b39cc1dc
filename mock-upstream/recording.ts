/** The record of every request that reached the mock, so tests can assert what got through. */
import type { IncomingMessage } from 'node:http';
import { tryParseJson } from './request-body';

export interface ReceivedRequest {
  method: string;
  /** Path including the query string, as sent. */
  path: string;
  /** Header names lowercased, as Node gives them. */
  headers: Record<string, string | string[]>;
  rawBody: Buffer;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: unknown | undefined;
  /** Arrival time, ms since the epoch. */
  at: number;
  /**
   * The id the mock answered it with (`x-request-id`, and `chatcmpl-<id>` in a chat answer),
   * set once it is served: maps an answer a client got back to the request that produced it.
   */
  responseId?: string;
}

/** Bound on the record: a long benchmark must not grow the mock without limit. */
export const MAX_RECEIVED = 10_000;

export function recordRequest(req: IncomingMessage, rawBody: Buffer): ReceivedRequest {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = value;
  }
  return {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    headers,
    rawBody,
    json: tryParseJson(rawBody),
    at: Date.now(),
  };
}

/** Appends in place (callers may hold the array) and drops the oldest beyond the bound. */
export function appendBounded(log: ReceivedRequest[], entry: ReceivedRequest): void {
  log.push(entry);
  if (log.length > MAX_RECEIVED) log.splice(0, log.length - MAX_RECEIVED);
}

/** The JSON form served by `GET /__mock/received`: the body as UTF-8 text. */
export function receivedToJson(r: ReceivedRequest): object {
  return {
    method: r.method,
    path: r.path,
    headers: r.headers,
    body: r.rawBody.toString('utf8'),
    json: r.json,
    at: r.at,
  };
}
