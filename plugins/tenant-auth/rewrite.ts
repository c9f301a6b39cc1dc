/**
 * The parsed request body rewritten so the upstream is never offered a tool the tenant lacks
 * and always speaks with the tenant's persona. Pure functions over parsed values.
 */
import { GatewayError } from '../../lib/http/errors';
import type { TenantPolicy } from '../../lib/tenant/context';
import { badRequest, printable, type JsonObject } from './body';
import type { TenantAuthConfig } from './config';
import { toolAllowed } from './policy';

function forbiddenTool(name: string, param: string): GatewayError {
  return new GatewayError({
    status: 403,
    type: 'permission_error',
    code: 'tool_not_permitted',
    message: `tool '${printable(name, 64)}' is not permitted for this tenant`,
    param,
  });
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * The name a tool entry (or a tool choice) is granted by, or null when it has none, which
 * is never granted:
 * - `function` tools: the function's name, from `function.name` (Chat Completions) or `name`
 *   (Responses API); when both are present they must agree, since upstreams read either;
 * - `custom` tools (Responses API): `name`;
 * - built-in tools (`web_search`, `file_search`, `code_interpreter`, `mcp`, …): the type
 *   itself, so a plan grants `web_search` by listing it;
 * - entries of the legacy `functions` list and `function_call` objects: `name`.
 */
export function toolIdentity(tool: unknown, legacy = false): string | null {
  if (tool === null || typeof tool !== 'object' || Array.isArray(tool)) return null;
  const t = tool as JsonObject;
  if (legacy) return str(t.name) ?? null;
  const type = str(t.type);
  if (type === undefined) return null;
  if (type === 'function') {
    const fn = t.function;
    const inner = fn !== null && typeof fn === 'object' ? str((fn as JsonObject).name) : undefined;
    const outer = str(t.name);
    if (inner !== undefined && outer !== undefined && inner !== outer) return null;
    return inner ?? outer ?? null;
  }
  if (type === 'custom') return str(t.name) ?? null;
  return type;
}

/** Every tool a `tool_choice` names (an `allowed_tools` choice names several). */
function chosenTools(choice: unknown, legacy: boolean): Array<string | null> {
  if (choice === null || typeof choice !== 'object') return []; // "auto", "none", "required"
  const c = choice as JsonObject;
  if (!legacy && c.type === 'allowed_tools') {
    const inner = Array.isArray(c.tools) ? c.tools : [null];
    return inner.map((tool) => toolIdentity(tool));
  }
  return [toolIdentity(choice, legacy)];
}

/**
 * Applies the tool grant to `tools` (and the legacy `functions`), and refuses a
 * `tool_choice`/`function_call` that names a forbidden tool. Returns the names it removed.
 */
export function applyToolPolicy(
  body: JsonObject,
  policy: TenantPolicy,
  mode: TenantAuthConfig['tool_policy'],
): string[] {
  const stripped: string[] = [];
  for (const [listField, choiceField, legacy] of [
    ['tools', 'tool_choice', false],
    ['functions', 'function_call', true],
  ] as const) {
    const choice = body[choiceField];
    for (const chosen of chosenTools(choice, legacy)) {
      if (chosen === null || !toolAllowed(policy, chosen)) {
        throw forbiddenTool(chosen ?? '<unnamed>', choiceField);
      }
    }

    const list = body[listField];
    if (list === undefined) continue;
    if (!Array.isArray(list)) {
      throw badRequest(400, 'invalid_request', `'${listField}' must be an array`, listField);
    }
    const kept = list.filter((tool) => {
      const name = toolIdentity(tool, legacy);
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

const SYSTEM_ROLES = new Set(['system', 'developer']);

function isSystemItem(m: unknown): boolean {
  if (m === null || typeof m !== 'object') return false;
  const role = (m as JsonObject).role;
  // Lenient upstreams accept `System` or `system `: compare as they might.
  return typeof role === 'string' && SYSTEM_ROLES.has(role.trim().toLowerCase());
}

/**
 * Puts the persona in front of the conversation. Chat Completions: a first system message
 * (`replace` drops the client's system and developer messages). Responses API: the
 * `instructions` (`prepend` keeps the client's after the persona; `replace` drops them and
 * the system/developer items of `input`). Returns true when the body changed; an empty
 * `messages` is left as sent.
 */
export function applyPersona(
  body: JsonObject,
  persona: string | null,
  mode: TenantAuthConfig['persona_mode'],
): boolean {
  if (persona === null) return false;
  if (Array.isArray(body.messages)) {
    const messages = body.messages as unknown[];
    // An empty conversation is the client's error, which the provider answers with its 400
    // (`empty_array`). A persona put in it would make it a valid request of one system
    // message, answered and billed: it is left as sent.
    if (messages.length === 0) return false;
    const rest = mode === 'replace' ? messages.filter((m) => !isSystemItem(m)) : messages;
    body.messages = [{ role: 'system', content: persona }, ...rest];
    return true;
  }
  if (body.input !== undefined) {
    const client = typeof body.instructions === 'string' ? body.instructions : '';
    body.instructions = mode === 'prepend' && client ? `${persona}\n\n${client}` : persona;
    if (mode === 'replace' && Array.isArray(body.input)) {
      body.input = (body.input as unknown[]).filter((m) => !isSystemItem(m));
    }
    return true;
  }
  return false;
}
