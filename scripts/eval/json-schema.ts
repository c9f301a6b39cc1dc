/**
 * The part of JSON Schema an answer assertion needs, checked without a dependency: `type`
 * (one or a list), `enum`, `const`, `properties`, `required`, `additionalProperties` (false or
 * a schema), `items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `pattern`,
 * `minimum`/`maximum`, `anyOf`, `allOf`. A keyword outside this list is refused when the case
 * is checked, rather than silently ignored (an ignored keyword is a check that always passes).
 */
export type JsonSchema = { [keyword: string]: unknown };

const SUPPORTED = new Set([
  '$schema',
  'title',
  'description',
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'minimum',
  'maximum',
  'anyOf',
  'allOf',
]);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function matchesType(v: unknown, t: string): boolean {
  const actual = typeOf(v);
  return actual === t || (t === 'number' && actual === 'integer');
}

function isSchema(v: unknown): v is JsonSchema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Errors of `value` against `schema`, each with its JSON pointer; [] when it matches. */
export function validateJson(value: unknown, schema: JsonSchema, at = ''): string[] {
  const here = at || '/';
  for (const k of Object.keys(schema)) {
    if (!SUPPORTED.has(k)) return [`${here}: schema keyword "${k}" is not supported`];
  }
  const errors: string[] = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [String(schema.type)];
    if (!types.some((t) => matchesType(value, t))) {
      return [`${here}: expected ${types.join(' or ')}, got ${typeOf(value)}`];
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => deepEqual(e, value))) {
    errors.push(`${here}: not one of ${JSON.stringify(schema.enum)}`);
  }
  if ('const' in schema && !deepEqual(schema.const, value)) {
    errors.push(`${here}: expected ${JSON.stringify(schema.const)}`);
  }
  if (typeof value === 'string') {
    if (typeof schema.minLength === 'number' && value.length < schema.minLength)
      errors.push(`${here}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength)
      errors.push(`${here}: longer than ${schema.maxLength}`);
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value))
      errors.push(`${here}: does not match /${schema.pattern}/`);
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum)
      errors.push(`${here}: below ${schema.minimum}`);
    if (typeof schema.maximum === 'number' && value > schema.maximum)
      errors.push(`${here}: above ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems)
      errors.push(`${here}: fewer than ${schema.minItems} items`);
    if (typeof schema.maxItems === 'number' && value.length > schema.maxItems)
      errors.push(`${here}: more than ${schema.maxItems} items`);
    if (isSchema(schema.items)) {
      const items = schema.items;
      value.forEach((x, i) => errors.push(...validateJson(x, items, `${at}/${i}`)));
    }
  }
  if (isSchema(value) && typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    const props = isSchema(schema.properties) ? schema.properties : {};
    if (Array.isArray(schema.required)) {
      for (const r of schema.required as string[]) {
        if (!(r in obj)) errors.push(`${at}/${r}: required`);
      }
    }
    for (const [k, x] of Object.entries(obj)) {
      const p = props[k];
      if (isSchema(p)) errors.push(...validateJson(x, p, `${at}/${k}`));
      else if (schema.additionalProperties === false) errors.push(`${at}/${k}: not allowed`);
      else if (isSchema(schema.additionalProperties))
        errors.push(...validateJson(x, schema.additionalProperties, `${at}/${k}`));
    }
  }
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf.filter(isSchema);
    if (!options.some((s) => validateJson(value, s, at).length === 0))
      errors.push(`${here}: matches none of anyOf`);
  }
  if (Array.isArray(schema.allOf)) {
    for (const s of schema.allOf.filter(isSchema)) errors.push(...validateJson(value, s, at));
  }
  return errors;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The answer as JSON: the whole text, or the body of a ```json fence. */
export function parseAnswerJson(text: string): { ok: true; value: unknown } | { ok: false } {
  const fenced = /```(?:json)?\s*\n([\s\S]*?)\n?```/.exec(text);
  for (const candidate of [text.trim(), fenced?.[1]?.trim()]) {
    if (candidate === undefined) continue;
    try {
      return { ok: true, value: JSON.parse(candidate) as unknown };
    } catch {
      // not this one
    }
  }
  return { ok: false };
}
