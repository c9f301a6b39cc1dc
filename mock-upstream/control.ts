/**
 * The HTTP control API under `/__mock/`, for out-of-process users (benchmarks, `npm start`):
 * the same operations as the in-process handle. Control requests are never recorded and never
 * subject to latency, capacity or injected failures.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseKnobs, type MockKnobs } from './knobs';
import { errorBody, sendJson } from './openai-error';
import { readBody } from './request-body';
import { receivedToJson, type ReceivedRequest } from './recording';
import type { MockStats } from './server';

export const CONTROL_PREFIX = '/__mock/';

/** What the control API drives: a subset of the MockUpstream handle. */
export interface Controllable {
  readonly received: ReceivedRequest[];
  knobs(): Readonly<MockKnobs>;
  configure(knobs: Partial<MockKnobs>): void;
  reset(): void;
  stats(): MockStats;
  startTimes(): number[];
  endTimes(): number[];
}

function badRequest(res: ServerResponse, message: string): void {
  sendJson(res, 400, errorBody(message, 'invalid_request_error'));
}

export async function handleControl(
  target: Controllable,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  const route = `${req.method ?? 'GET'} ${path}`;
  switch (route) {
    case 'GET /__mock/health':
      sendJson(res, 200, { ok: true });
      return;
    case 'GET /__mock/received':
      sendJson(res, 200, target.received.map(receivedToJson));
      return;
    case 'GET /__mock/stats':
      sendJson(res, 200, target.stats());
      return;
    case 'GET /__mock/starts':
      sendJson(res, 200, target.startTimes());
      return;
    case 'GET /__mock/ends':
      sendJson(res, 200, target.endTimes());
      return;
    case 'GET /__mock/config':
      sendJson(res, 200, target.knobs());
      return;
    case 'POST /__mock/config': {
      let knobs: Partial<MockKnobs>;
      try {
        knobs = parseKnobs(JSON.parse((await readBody(req)).toString('utf8')));
      } catch (e) {
        badRequest(res, e instanceof Error ? e.message : String(e));
        return;
      }
      target.configure(knobs);
      sendJson(res, 200, target.knobs());
      return;
    }
    case 'POST /__mock/reset':
      target.reset();
      sendJson(res, 200, target.knobs());
      return;
    default:
      sendJson(res, 404, errorBody(`Invalid URL (${route})`, 'invalid_request_error'));
  }
}
