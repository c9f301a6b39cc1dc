// Kong's generated error responses.
// kong/tools/http.lua (3.9.3): get_response_type / get_mime_type / error templates.
// kong/error_handlers.lua (3.9.3): status -> default message, Accept, then Content-Type, then
// error_default_type (text/plain in kong/templates/kong_defaults.lua) picks the format.

const JSON_TYPE = 'application/json; charset=utf-8';
const PLAIN_TYPE = 'text/plain; charset=utf-8';
const HTML_TYPE = 'text/html; charset=utf-8';
const XML_TYPE = 'application/xml; charset=utf-8';

const MIME_TYPES: Record<string, string> = {
  'application/json': JSON_TYPE,
  'text/html': HTML_TYPE,
  'text/plain': PLAIN_TYPE,
  'application/xml': XML_TYPE,
  application: JSON_TYPE,
  text: PLAIN_TYPE,
  '*/*': JSON_TYPE,
};

/** kong/error_handlers.lua (3.9.3) BODIES. */
const DEFAULT_MESSAGES: Record<number, string> = {
  400: 'Bad request',
  404: 'Not found',
  405: 'Method not allowed',
  408: 'Request timeout',
  411: 'Length required',
  412: 'Precondition failed',
  413: 'Payload too large',
  414: 'URI too long',
  417: 'Expectation failed',
  494: 'Request header or cookie too large',
  500: 'An unexpected error occurred',
  502: 'An invalid response was received from the upstream server',
  503: 'The upstream server is currently unavailable',
  504: 'The upstream server is timing out',
};

export function defaultErrorMessage(status: number): string {
  return DEFAULT_MESSAGES[status] ?? `The upstream server responded with ${status}`;
}

function mimeTypeOf(mediaType: string): string | undefined {
  const type = (mediaType.trim().split(';')[0] ?? '').trim().toLowerCase();
  const [major, minor] = type.split('/');
  if (major === undefined || minor === undefined) return undefined;
  if (minor === '*') return major === '*' ? JSON_TYPE : MIME_TYPES[major];
  return MIME_TYPES[type];
}

/** kong/tools/http.lua (3.9.3) get_response_type: highest q wins, default JSON. */
export function responseType(accept: string | undefined): string {
  let contentType = JSON_TYPE;
  if (accept === undefined) return contentType;
  let best = 0;
  for (const raw of accept.split(',')) {
    const value = raw.trim();
    const m =
      /^((?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*)\/(?:[a-z0-9][a-z0-9\-!#$&^_+.]+|\*))(.*)$/i.exec(value);
    if (!m || m[1] === undefined) continue;
    const q = /;\s*q=([01](?:\.\d{0,3})?)/i.exec(m[2] ?? '');
    const quality = q?.[1] !== undefined ? Number(q[1]) : 1;
    if (quality > best) {
      best = quality;
      contentType = mimeTypeOf(m[1]) ?? contentType;
    }
  }
  return contentType;
}

/** kong/tools/http.lua (3.9.3) ERROR_TEMPLATES. */
export function errorBody(contentType: string, message: string, requestId: string): string {
  if (contentType === HTML_TYPE) {
    return `<!doctype html>\n<html>\n  <head>\n    <meta charset="utf-8">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>${message}.</p>\n    <p>request_id: ${requestId}</p>\n  </body>\n</html>\n`;
  }
  if (contentType === PLAIN_TYPE) return `${message}\nrequest_id: ${requestId}\n`;
  if (contentType === XML_TYPE) {
    return `<?xml version="1.0" encoding="UTF-8"?>\n<error>\n  <message>${message}</message>\n  <requestid>${requestId}</requestid>\n</error>\n`;
  }
  return `{\n  "message":"${message}",\n  "request_id":"${requestId}"\n}`;
}

/**
 * Content type of a gateway-generated error (kong/error_handlers.lua 3.9.3): the request's Accept,
 * else its Content-Type, else error_default_type = text/plain.
 */
export function errorHandlerType(
  accept: string | undefined,
  contentType: string | undefined,
): string {
  const header = accept ?? contentType;
  if (header === undefined) return PLAIN_TYPE;
  return responseType(header);
}
