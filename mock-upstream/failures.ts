/**
 * Failure injection: decides which requests fail (by path prefix, rate and count) and carries
 * the failure out. Decisions are deterministic so tests that inject a partial rate repeat.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FailureSpec } from './knobs';
import { errorBody, errorTypeForStatus, sendJson } from './openai-error';

const DEFAULT_FAILURE_STATUS = 500;
// Guards the rate accumulator against 0.1 + 0.1 + ... landing just below 1.
const EPSILON = 1e-9;

export interface FailurePlan {
  /** Replaces the spec and restarts its rate and count. */
  set(spec: FailureSpec | null): void;
  /** The failure to inflict on a request to `path`, or null to serve it normally. */
  decide(path: string): FailureSpec | null;
  /** Failures injected since the plan was last set. */
  readonly injected: number;
}

export function createFailurePlan(): FailurePlan {
  let spec: FailureSpec | null = null;
  let remaining = Infinity;
  let accumulated = 0;
  let injected = 0;
  return {
    set(next) {
      spec = next;
      remaining = next?.count ?? Infinity;
      accumulated = 0;
      injected = 0;
    },
    decide(path) {
      if (spec === null || remaining <= 0) return null;
      if (spec.pathPrefix !== undefined && !path.startsWith(spec.pathPrefix)) return null;
      // Error diffusion: each eligible request adds `rate`; a failure spends 1. Rate 0.25
      // thus fails requests 4, 8, 12, ... exactly, instead of a random quarter.
      accumulated += spec.rate ?? 1;
      if (accumulated < 1 - EPSILON) return null;
      accumulated -= 1;
      remaining -= 1;
      injected += 1;
      return spec;
    },
    get injected() {
      return injected;
    },
  };
}

/** Carries out a failure. A `timeout` does nothing: the socket stays open until someone closes it. */
export function inflictFailure(spec: FailureSpec, req: IncomingMessage, res: ServerResponse): void {
  switch (spec.mode) {
    case 'status': {
      const status = spec.status ?? DEFAULT_FAILURE_STATUS;
      if (spec.body !== undefined) {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(spec.body);
        return;
      }
      const message = `mock upstream: injected failure (HTTP ${status})`;
      sendJson(res, status, errorBody(message, errorTypeForStatus(status), null, null));
      return;
    }
    case 'reset':
      // A TCP RST, not a FIN: the client sees ECONNRESET as with a crashed upstream.
      req.socket.resetAndDestroy();
      return;
    case 'timeout':
    case 'cut':
      // A cut is carried out by the endpoint, part-way through its answer.
      return;
  }
}
