/**
 * The request body: refused when it is not what a JSON route accepts (413/415/400), and
 * rewritten so the upstream is never offered a tool the tenant lacks and always speaks with
 * the tenant's persona. Pure functions over parsed values; the plugin does the PDK calls.
 */
import { GatewayError } from '../../lib/http/errors';
import { firstHeader, type HeaderMap } from '../../lib/pdk/kong';
import type { TenantPolicy } from '../../lib/tenant/context';
import { toolAllowed } from './policy';
import type { TenantAuthConfig } from './schema';

function badRequest(status: number, code: string, message: string, param: string | null = null) {
  return new GatewayError({ status, type: 'invalid_request_error', code, message, param });
}

export function bodyTooLarge(maxBytes: number): GatewayError {
  return badRequest(413, 'body_too_large', `request body is larger than ${maxBytes} bytes`);
}

/** From headers alone: does the request carry a body, and is it acceptable? (413/415) */
export function precheckBody(headers: HeaderMap, maxBytes: number): boolean {
  const length = firstHeader(headers, 'content-length');
  const chunked = firstHeader(headers, 'transfer-encoding') !== undefined;
  const declared = length === undefined ? undefined : Number(length);
  const hasBody = chunked || (declared !== undefined && declared > 0);
  if (declared !== undefined && Number.isFinite(declared) && declared > maxBytes) {
    throw bodyTooLarge(maxBytes);
  }
  if (!hasBody) return false;
  const type =
    (firstHeader(headers, 'content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(type)) {
    throw badRequest(415, 'unsupported_media_type', 'request body must be application/json');
  }
  return true;
}

export type JsonObject = Record<string, unknown>;

export function parseJsonObject(raw: Buffer, maxBytes: number): JsonObject {
  if (raw.length > maxBytes) {
    throw bodyTooLarge(maxBytes);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw badRequest(
      400,
      'invalid_json',
      `request body is not valid JSON: ${(e as Error).message}`,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw badRequest(400, 'invalid_json', 'request body must be a JSON object');
  }
  return parsed as JsonObject;
}

function forbiddenTool(name: string, param: string): GatewayError {
  return new GatewayError({
    status: 403,
    type: 'permission_error',
    code: 'tool_not_permitted',
    message: `tool '${name.slice(0, 64)}' is not permitted for this tenant`,
    param,
  });
}

function toolName(tool: unknown): string | null {
  if (tool === null || typeof tool !== 'object') return null;
  const t = tool as JsonObject;
  const fn = t.function;
  if (fn !== null && typeof fn === 'object' && typeof (fn as JsonObject).name === 'string') {
    return (fn as JsonObject).name as string;
  }
  return typeof t.name === 'string' ? t.name : null;
}

/**
 * Applies the tool grant to `tools` (and the legacy `functions`), and refuses a
 * `tool_choice`/`function_call` that names a forbidden tool. Returns the names it removed.
 * A tool entry whose name cannot be read is treated as forbidden: unknown is not granted.
 */
export function applyToolPolicy(
  body: JsonObject,
  policy: TenantPolicy,
  mode: TenantAuthConfig['tool_policy'],
): string[] {
  const stripped: string[] = [];
  for (const [listField, choiceField] of [
    ['tools', 'tool_choice'],
    ['functions', 'function_call'],
  ] as const) {
    const choice = body[choiceField];
    const chosen = typeof choice === 'object' && choice !== null ? toolName(choice) : null;
    if (chosen !== null && !toolAllowed(policy, chosen)) throw forbiddenTool(chosen, choiceField);

    const list = body[listField];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      throw badRequest(400, 'invalid_request', `'${listField}' must be an array`, listField);
    }
    const kept = list.filter((tool) => {
      const name = toolName(tool);
      if (name !== null && toolAllowed(policy, name)) return true;
      if (mode === 'reject') throw forbiddenTool(name ?? '<unnamed>', listField);
      stripped.push(name ?? '<unnamed>');
      return false;
    });
    if (kept.length === list.length) continue;
    if (kept.length > 0) {
      body[listField] = kept;
      continue;
    }
    // Nothing left to offer: OpenAI rejects a choice without tools, and "required" can't be met.
    if (choice === 'required') throw forbiddenTool(stripped[0] ?? '<unnamed>', choiceField);
    delete body[listField];
    delete body[choiceField];
    if (listField === 'tools') delete body.parallel_tool_calls;
  }
  return stripped;
}

/** Puts the persona in front of the chat as a system message. Returns true when it changed. */
export function applyPersona(
  body: JsonObject,
  persona: string | null,
  mode: TenantAuthConfig['persona_mode'],
): boolean {
  if (persona === null || !Array.isArray(body.messages)) return false;
  const messages = body.messages as unknown[];
  const rest =
    mode === 'replace'
      ? messages.filter((m) => {
          const role = m !== null && typeof m === 'object' ? (m as JsonObject).role : undefined;
          return role !== 'system' && role !== 'developer';
        })
      : messages;
  body.messages = [{ role: 'system', content: persona }, ...rest];
  return true;
}
