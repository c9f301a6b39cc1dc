/**
 * Reading a plugin's config as the plugin server receives it.
 *
 * Kong validates the config and fills schema defaults, but a field without a default that
 * was not set is stored as null and dropped when read back (DAO select without `nulls`), so
 * it arrives in `StartInstance` as a missing key. `readConfig` gives the plugin a complete
 * object: every declared field present, defaults applied where Kong would have, `null` for
 * the rest, nested records, record-valued maps and record arrays included.
 */
import type { KongField, KongSchemaFields } from './fields';

function readValue(def: KongField, value: unknown): unknown {
  if (value === undefined || value === null) {
    if (def.default !== undefined) return readValue(def, structuredClone(def.default));
    if (def.type === 'record' && def.required && def.fields) return readRecord(def.fields, {});
    return null;
  }
  if (def.type === 'record' && def.fields && typeof value === 'object' && !Array.isArray(value)) {
    return readRecord(def.fields, value as Record<string, unknown>);
  }
  if (def.type === 'map' && def.values && typeof value === 'object' && !Array.isArray(value)) {
    const values = def.values;
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, readValue(values, v)]),
    );
  }
  if ((def.type === 'array' || def.type === 'set') && def.elements && Array.isArray(value)) {
    const elements = def.elements;
    return value.map((v) => readValue(elements, v));
  }
  return value;
}

function readRecord(
  fields: KongSchemaFields,
  input: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) out[name] = readValue(def, input[name]);
  }
  return out;
}

/**
 * The complete config object for `fields` from what the plugin server was given. The type
 * parameter is the plugin's own config interface; the schema is what makes it true.
 */
export function readConfig<T>(fields: KongSchemaFields, raw: unknown): T {
  const input = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  return readRecord(fields, input) as T;
}
