/**
 * Reading a plugin's config as the plugin server receives it.
 *
 * Kong validates the config and fills schema defaults, but a field without a default that
 * was not set is stored as null and dropped when read back (DAO select without `nulls`), so
 * it arrives in `StartInstance` as a missing key. `readConfig` gives the plugin a complete
 * object: every declared field present, defaults applied where Kong would have, `null` for
 * the rest, nested records, record-valued maps and record arrays included.
 */
import { applyAliases } from './deprecated';
import type { ConfigOf } from './derive';
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
 * The complete config object for `fields` from what the plugin server was given, typed by the
 * schema itself (`ConfigOf`, lib/schema/derive.ts): the fields must keep their literal types.
 */
export function readConfig<const F extends KongSchemaFields>(fields: F, raw: unknown): ConfigOf<F> {
  const input = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const config = readRecord(fields, input);
  // A deprecated alias's value moves to the field that replaced it (lib/schema/deprecated.ts).
  applyAliases(config, aliasesOf(fields));
  return config as ConfigOf<F>;
}

type Alias = { oldPath: string[]; newPath: string[]; newDefault: unknown };

/** Every field of `fields` (records included) that declares what replaced it. */
export function aliasesOf(fields: KongSchemaFields, at: string[] = [], root = fields): Alias[] {
  const out: Alias[] = [];
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) {
      const newPath = def.deprecation?.replaced_with?.[0]?.path;
      if (newPath) {
        const target = fieldAt(root, newPath);
        if (!target)
          throw new Error(`deprecated ${[...at, name].join('.')}: no field ${newPath.join('.')}`);
        out.push({ oldPath: [...at, name], newPath: [...newPath], newDefault: target.default });
      }
      if (def.type === 'record' && def.fields)
        out.push(...aliasesOf(def.fields, [...at, name], root));
    }
  }
  return out;
}

function fieldAt(fields: KongSchemaFields, path: readonly string[]): KongField | undefined {
  let list: KongSchemaFields | undefined = fields;
  let found: KongField | undefined;
  for (const key of path) {
    found = list?.find((e) => key in e)?.[key];
    list = found?.fields;
  }
  return found;
}
