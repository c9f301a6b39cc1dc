/**
 * OpenAI-style JSON errors: every refusal the gateway makes has the shape clients of an
 * OpenAI-compatible API already parse, `{"error": {"message", "type", "code", "param"}}`,
 * with the right HTTP status and, where waiting helps, `Retry-After`.
 */
import type { HeaderValue, KongPdk } from '../pdk/kong';

export type GatewayErrorType =
  | 'authentication_error'
  | 'permission_error'
  | 'invalid_request_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'service_unavailable'
  | 'server_error';

export interface GatewayErrorSpec {
  status: number;
  type: GatewayErrorType;
  /** Stable machine-readable reason, e.g. `missing_credential`. */
  code: string;
  message: string;
  param?: string | null;
  retryAfterSeconds?: number;
  headers?: Record<string, HeaderValue>;
}

/** A refusal the plugin decided on: carried as an exception to the one place that answers. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  constructor(readonly spec: GatewayErrorSpec) {
    super(spec.message);
  }
  get status(): number {
    return this.spec.status;
  }
  get code(): string {
    return this.spec.code;
  }
}

export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}

/**
 * The error body. `requestId` is Kong's request id (the `X-Kong-Request-Id` the client also gets):
 * a tenant quoting it lets the operator find the request (and replay a captured one).
 */
export function errorBody(
  spec: GatewayErrorSpec,
  requestId?: string,
): {
  error: {
    message: string;
    type: string;
    code: string;
    param: string | null;
    request_id?: string;
  };
} {
  return {
    error: {
      message: spec.message,
      type: spec.type,
      code: spec.code,
      param: spec.param ?? null,
      ...(requestId ? { request_id: requestId } : {}),
    },
  };
}

export function errorHeaders(spec: GatewayErrorSpec): Record<string, HeaderValue> {
  const headers: Record<string, HeaderValue> = {
    'Content-Type': 'application/json; charset=utf-8',
    ...spec.headers,
  };
  if (spec.retryAfterSeconds !== undefined) {
    headers['Retry-After'] = String(Math.max(0, Math.ceil(spec.retryAfterSeconds)));
  }
  return headers;
}

/**
 * Ends the request with the error. `kong.response.exit` is fire-and-forget across the plugin
 * server boundary (its promise does not carry a result): the caller must return right after.
 */
export function exitWithError(kong: KongPdk, spec: GatewayErrorSpec, requestId?: string): void {
  void kong.response.exit(
    spec.status,
    JSON.stringify(errorBody(spec, requestId)),
    errorHeaders(spec),
  );
}

/** Kong's id of the request (`ngx.var.kong_request_id`), or undefined where it cannot be read. */
export async function kongRequestId(kong: KongPdk): Promise<string | undefined> {
  try {
    const id = await kong.nginx.getVar('kong_request_id');
    return typeof id === 'string' && /^[0-9a-f]{32}$/.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}
