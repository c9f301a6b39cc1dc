// Kong's metaschema for a plugin's schema (kong/db/schema/metaschema.lua 3.9.3): Kong checks
// every plugin schema when it loads the plugins (kong/init.lua init -> "error loading plugin
// schemas") and refuses to start on any violation, whether or not the plugin is configured.
// Mirrored here: field types, `description` 10..500 bytes, `required` a boolean, the
// attributes a type must declare (array/set `elements`, map `keys`+`values`, record `fields`),
// and a `default` valid for its own field. Checked on the real Kong by
// test/parity/kong-refusals.test.ts.
import type { SchemaField } from '../types';
import { validatePluginConfig, type FieldList } from './schema';

/** Schema.valid_types, in the order Kong prints them. */
const VALID_TYPES = [
  'string',
  'boolean',
  'json',
  'number',
  'integer',
  'function',
  'array',
  'record',
  'foreign',
  'set',
  'map',
];

/** metaschema.lua required_attributes. */
const REQUIRED_ATTRIBUTES: Record<string, string[]> = {
  array: ['elements'],
  set: ['elements'],
  map: ['keys', 'values'],
  record: ['fields'],
};

function checkField(name: string, def: SchemaField, path: string, problems: string[]): void {
  const at = (attr: string, msg: string) => problems.push(`${path}.${attr}: ${msg}`);
  if (typeof def.type !== 'string') at('type', 'required field missing');
  else if (!VALID_TYPES.includes(def.type))
    at('type', `expected one of: ${VALID_TYPES.join(', ')}`);
  if (def.description !== undefined) {
    if (typeof def.description !== 'string') at('description', 'expected a string');
    // Kong measures in bytes (Lua's `#`): a curly quote counts three.
    else if (Buffer.byteLength(def.description) < 10)
      at('description', 'length must be at least 10');
    else if (Buffer.byteLength(def.description) > 500)
      at('description', 'length must be at most 500');
  }
  if (def.required !== undefined && typeof def.required !== 'boolean')
    at('required', 'expected a boolean');
  for (const attr of REQUIRED_ATTRIBUTES[def.type ?? ''] ?? []) {
    if (def[attr] === undefined)
      problems.push(`${name}: field of type '${String(def.type)}' must declare '${attr}'`);
  }
  if (def.elements) checkField(name, def.elements, `${path}.elements`, problems);
  if (def.keys) checkField(name, def.keys, `${path}.keys`, problems);
  if (def.values) checkField(name, def.values, `${path}.values`, problems);
  if (Array.isArray(def.fields)) checkFields(def.fields, `${path}.fields`, problems);
  // A default must pass the field's own validation (metaschema.lua check_field default).
  if (def.default !== undefined && def.default !== null && VALID_TYPES.includes(def.type ?? '')) {
    const bare: SchemaField = { ...def, default: undefined };
    const r = validatePluginConfig([{ [name]: bare }], { [name]: def.default });
    for (const e of r.errors) at('default', e.replace(/^config\.[^:]*: /, ''));
  }
}

function checkFields(fields: FieldList, path: string, problems: string[]): void {
  fields.forEach((entry, i) => {
    for (const [name, def] of Object.entries(entry))
      checkField(name, def, `${path}[${i + 1}] (${name})`, problems);
  });
}

/**
 * The metaschema violations of a plugin's config fields, in Kong's start-up message shape:
 * `error loading plugin schemas: on plugin 'x': [off] schema violation (…)`; empty when none.
 */
export function metaschemaViolations(plugin: string, configFields: FieldList): string[] {
  const problems: string[] = [];
  checkFields(configFields, 'config.fields', problems);
  return problems.map(
    (p) => `error loading plugin schemas: on plugin '${plugin}': [off] schema violation (${p})`,
  );
}
