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

/** The kong.conf settings of Kong's error pages (kong/templates/kong_defaults.lua 3.9.3). */
export interface ErrorConf {
  /** error_default_type: what kong/error_handlers.lua uses without Accept and Content-Type. */
  defaultType: string;
  /** error_template_{json,html,xml,plain}: the file contents, read at start. */
  templates: Partial<Record<'json' | 'html' | 'xml' | 'plain', string>>;
}

export const DEFAULT_ERROR_CONF: ErrorConf = { defaultType: PLAIN_TYPE, templates: {} };

const ERROR_DEFAULT_TYPES: Record<string, string> = {
  'text/plain': PLAIN_TYPE,
  'text/html': HTML_TYPE,
  'application/json': JSON_TYPE,
  'application/xml': XML_TYPE,
};

/**
 * kong.conf's error settings from a `kongConf` map (the same keys kong-runner writes to
 * kong.conf). Kong refuses an error_default_type outside its enum
 * (kong/conf_loader/constants.lua); a template file it cannot read is logged and the default
 * template used (kong/tools/http.lua custom_error_templates).
 */
export function errorConfFrom(
  kongConf: Record<string, string | number | boolean> | undefined,
  readFile: (path: string) => string,
  log: (line: string) => void,
): ErrorConf {
  const conf: ErrorConf = { defaultType: PLAIN_TYPE, templates: {} };
  const def = kongConf?.error_default_type;
  if (def !== undefined) {
    const t = ERROR_DEFAULT_TYPES[String(def)];
    if (!t)
      throw new Error(
        `error_default_type has an invalid value: '${String(def)}' (expected one of: text/plain, text/html, application/json, application/xml)`,
      );
    conf.defaultType = t;
  }
  for (const f of ['json', 'html', 'xml', 'plain'] as const) {
    const path = kongConf?.[`error_template_${f}`];
    if (path === undefined || path === 'NONE') continue;
    try {
      conf.templates[f] = readFile(String(path));
    } catch (e) {
      log(`[kong] failed reading the custom ${f} error template: ${(e as Error).message}`);
    }
  }
  return conf;
}

/** Lua's string.format with only `%s` (and `%%`), as Kong fills an error template. */
function luaFormat(template: string, ...args: string[]): string {
  let i = 0;
  return template.replace(/%([%s])/g, (_, c: string) => (c === '%' ? '%' : (args[i++] ?? '')));
}

/** kong/tools/http.lua (3.9.3) ERROR_TEMPLATES, or the configured error_template_* file. */
export function errorBody(
  contentType: string,
  message: string,
  requestId: string,
  conf: ErrorConf = DEFAULT_ERROR_CONF,
): string {
  const custom =
    contentType === HTML_TYPE
      ? conf.templates.html
      : contentType === PLAIN_TYPE
        ? conf.templates.plain
        : contentType === XML_TYPE
          ? conf.templates.xml
          : contentType === JSON_TYPE
            ? conf.templates.json
            : undefined;
  if (custom !== undefined) return luaFormat(custom, message, requestId);
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
 * else its Content-Type, else error_default_type (text/plain unless kong.conf says otherwise).
 */
export function errorHandlerType(
  accept: string | undefined,
  contentType: string | undefined,
  defaultType: string = PLAIN_TYPE,
): string {
  const header = accept ?? contentType;
  if (header === undefined) return responseType(defaultType);
  return responseType(header);
}
