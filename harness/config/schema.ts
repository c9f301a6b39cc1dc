// Validation of a plugin config against its Kong schema, with Kong's semantics:
// kong/db/schema/init.lua (3.9.3) process_auto_fields (defaults, nested record defaults of
// required records, absent optional fields dropped) then validate / validate_field
// (type checks, validators in Schema.validators_order, elements required, strings len_min 1).
import type { SchemaField } from '../types';
import { luaPatternToRegExp } from './lua-pattern';

export type FieldList = Array<Record<string, SchemaField>>;

export interface ValidationResult {
  value: Record<string, unknown>;
  errors: string[];
  /** Constraints that could not be checked here (e.g. an untranslatable Lua pattern). */
  notes: string[];
}

interface Ctx {
  errors: string[];
  notes: string[];
}

const isRecordValue = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

function fieldEntries(fields: FieldList): Array<[string, SchemaField]> {
  const out: Array<[string, SchemaField]> = [];
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) out.push([name, def]);
  }
  return out;
}

function luaToString(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Schema.validators in Schema.validators_order (kong/db/schema/init.lua 3.9.3). */
function runValidators(def: SchemaField, value: unknown, path: string, ctx: Ctx): boolean {
  const fail = (msg: string): false => {
    ctx.errors.push(`${path}: ${typeof def.err === 'string' ? def.err : msg}`);
    return false;
  };
  if (def.eq !== undefined && value !== def.eq) return fail(`value must be ${luaToString(def.eq)}`);
  if (def.not_one_of && def.not_one_of.includes(value)) {
    return fail(`must not be one of: ${def.not_one_of.map(luaToString).join(', ')}`);
  }
  if (def.one_of && !def.one_of.includes(value)) {
    return fail(`expected one of: ${def.one_of.map(luaToString).join(', ')}`);
  }
  if (typeof value === 'number') {
    if (def.gt !== undefined && !(value > def.gt))
      return fail(`value must be greater than ${def.gt}`);
    if (def.between && (value < def.between[0] || value > def.between[1])) {
      return fail(`value should be between ${def.between[0]} and ${def.between[1]}`);
    }
  }
  const len =
    typeof value === 'string' ? value.length : Array.isArray(value) ? value.length : undefined;
  if (len !== undefined) {
    if (def.len_eq !== undefined && len !== def.len_eq) return fail(`length must be ${def.len_eq}`);
    if (def.len_min !== undefined && len < def.len_min)
      return fail(`length must be at least ${def.len_min}`);
    if (def.len_max !== undefined && len > def.len_max)
      return fail(`length must be at most ${def.len_max}`);
  }
  if (typeof value === 'string') {
    if (def.starts_with !== undefined && !value.startsWith(def.starts_with)) {
      return fail(`should start with: ${def.starts_with}`);
    }
    for (const [key, wantMatch] of [
      ['not_match', false],
      ['match', true],
    ] as const) {
      const pattern = def[key];
      if (typeof pattern !== 'string') continue;
      const re = luaPatternToRegExp(pattern);
      if (!re) {
        ctx.notes.push(
          `${path}: Lua pattern ${JSON.stringify(pattern)} not checked by the harness`,
        );
        continue;
      }
      if (re.test(value) !== wantMatch) return fail(`invalid value: ${value}`);
    }
  }
  return true;
}

/** Schema:validate_field type checks (kong/db/schema/init.lua 3.9.3), returning the processed value. */
function processValue(def: SchemaField, value: unknown, path: string, ctx: Ctx): unknown {
  // A set deprecated field: Kong warns (kong/db/schema/init.lua validate_field, via
  // kong.deprecation: "<message> (deprecated after <removal_in_version>)").
  const dep = def.deprecation as { message?: string; removal_in_version?: string } | undefined;
  if (dep?.message) {
    ctx.notes.push(`[warn] ${dep.message} (deprecated after ${String(dep.removal_in_version)})`);
  }
  switch (def.type) {
    case 'string':
      if (typeof value !== 'string') return void ctx.errors.push(`${path}: expected a string`);
      // "empty strings are not accepted by default"
      runValidators({ ...def, len_min: def.len_min ?? 1 }, value, path, ctx);
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        return void ctx.errors.push(`${path}: expected a number`);
      }
      runValidators(def, value, path, ctx);
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        return void ctx.errors.push(`${path}: expected an integer`);
      }
      runValidators(def, value, path, ctx);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') return void ctx.errors.push(`${path}: expected a boolean`);
      runValidators(def, value, path, ctx);
      return value;
    case 'array':
    case 'set': {
      if (!Array.isArray(value)) {
        return void ctx.errors.push(
          `${path}: expected ${def.type === 'set' ? 'a set' : 'an array'}`,
        );
      }
      // make_set: duplicates are removed, first occurrence kept
      const items = def.type === 'set' ? value.filter((v, i) => value.indexOf(v) === i) : value;
      const out = items.map((item, i) => {
        const p = `${path}[${i + 1}]`; // Kong reports Lua (1-based) indexes
        if (item === null || item === undefined)
          return void ctx.errors.push(`${p}: required field missing`);
        return def.elements ? processValue(def.elements, item, p, ctx) : item;
      });
      runValidators(def, out, path, ctx);
      return out;
    }
    case 'map': {
      if (!isRecordValue(value)) return void ctx.errors.push(`${path}: expected a map`);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (def.keys) processValue(def.keys, k, `${path}.${k}`, ctx);
        out[k] = def.values ? processValue(def.values, v, `${path}.${k}`, ctx) : v;
      }
      return out;
    }
    case 'record':
      if (!isRecordValue(value)) return void ctx.errors.push(`${path}: expected a record`);
      return processRecord(def.fields ?? [], value, path, ctx);
    case 'json':
    case 'foreign':
    case 'any':
      return value;
    default:
      ctx.errors.push(`${path}: invalid type: ${String(def.type)}`);
      return undefined;
  }
}

/** handle_missing_field (kong/db/schema/init.lua 3.9.3). */
function processMissing(def: SchemaField, path: string, ctx: Ctx): unknown {
  if (def.default !== undefined && def.default !== null) {
    return processValue(def, structuredClone(def.default), path, ctx);
  }
  if (def.required !== true) return undefined; // nullable: stored as null, dropped on read
  if (def.type === 'record') return processRecord(def.fields ?? [], {}, path, ctx);
  ctx.errors.push(`${path}: required field missing`);
  return undefined;
}

function processRecord(fields: FieldList, input: Record<string, unknown>, path: string, ctx: Ctx) {
  const entries = fieldEntries(fields);
  const known = new Set(entries.map(([n]) => n));
  for (const key of Object.keys(input)) {
    if (!known.has(key)) ctx.errors.push(`${path}.${key}: unknown field`);
  }
  const out: Record<string, unknown> = {};
  for (const [name, def] of entries) {
    const raw = input[name];
    const p = `${path}.${name}`;
    const v =
      raw === undefined || raw === null
        ? processMissing(def, p, ctx)
        : processValue(def, raw, p, ctx);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * Validates `input` (the `config` of a plugin entry) against the `config` record's fields and
 * fills defaults. Error lines are "config.<path>: <Kong message>".
 */
export function validatePluginConfig(configFields: FieldList, input: unknown): ValidationResult {
  const ctx: Ctx = { errors: [], notes: [] };
  if (input !== undefined && input !== null && !isRecordValue(input)) {
    return { value: {}, errors: ['config: expected a record'], notes: [] };
  }
  const value = processRecord(configFields, input ?? {}, 'config', ctx);
  return { value, errors: ctx.errors, notes: ctx.notes };
}

/**
 * The `config` record of a dumped plugin schema: Schema.fields[{config: {type: record, fields}}],
 * as Kong holds it: a plugin's schema is a subschema of the plugins entity, and
 * kong/db/schema/entity.lua `make_records_required` (3.9.3) makes every record reached through
 * records (not through maps or arrays) required unless it says `required: false`.
 */
export function configFieldsOf(schema: { fields: FieldList }): FieldList {
  for (const entry of schema.fields) {
    const config = entry.config;
    if (config) return recordsRequired(config.fields ?? []);
  }
  return [];
}

function recordsRequired(fields: FieldList): FieldList {
  return fields.map((entry) =>
    Object.fromEntries(
      Object.entries(entry).map(([name, def]) => [
        name,
        def.type === 'record'
          ? {
              ...def,
              required: def.required ?? true,
              fields: recordsRequired(def.fields ?? []),
            }
          : def,
      ]),
    ),
  );
}
