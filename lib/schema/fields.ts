/**
 * Helpers to declare a plugin `Schema` in Kong's schema language (kong/db/schema), which
 * kong-js-pluginserver hands to Kong wrapped as the `config` record. Every field carries a
 * description; most carry a default. `schemaFieldPaths` lists every declared field so a test
 * can check that the plugin README documents each one.
 */
export type KongFieldType =
  'string' | 'number' | 'integer' | 'boolean' | 'array' | 'set' | 'map' | 'record';

export interface KongField {
  type: KongFieldType;
  description?: string;
  required?: boolean;
  default?: unknown;
  one_of?: readonly unknown[];
  between?: readonly [number, number];
  gt?: number;
  len_min?: number;
  len_max?: number;
  match?: string;
  elements?: KongField;
  keys?: KongField;
  values?: KongField;
  fields?: KongSchemaFields;
  referenceable?: boolean;
  encrypted?: boolean;
  /**
   * Kong's field deprecation (metaschema.lua): Kong logs `message` as a deprecation warning
   * whenever the field is set. `replaced_with[0].path` (from the config's root) is where
   * readConfig moves its value (lib/schema/deprecated.ts).
   */
  deprecation?: {
    message: string;
    removal_in_version: string;
    replaced_with?: ReadonlyArray<{ path: readonly string[] }>;
  };
}

export type KongSchemaFields = ReadonlyArray<Record<string, KongField>>;

type Opts = Omit<KongField, 'type' | 'description'>;

/**
 * What a helper returns: the field as declared, its literal types kept (`const` type
 * parameters), so `ConfigOf` (lib/schema/derive.ts) can read the config type off the schema.
 */
type Built<T extends KongFieldType, O, X = unknown> = { type: T; description: string } & X & O;

function build<T extends KongFieldType, O, X>(type: T, description: string, extra: X, opts?: O) {
  return { type, description, ...extra, ...opts } as Built<T, O, X>;
}

export const field = {
  string: <const O extends Opts = object>(description: string, opts?: O) =>
    build('string', description, {}, opts),
  integer: <const O extends Opts = object>(description: string, opts?: O) =>
    build('integer', description, {}, opts),
  number: <const O extends Opts = object>(description: string, opts?: O) =>
    build('number', description, {}, opts),
  boolean: <const O extends Opts = object>(description: string, opts?: O) =>
    build('boolean', description, {}, opts),
  array: <const E extends KongField, const O extends Opts = object>(
    description: string,
    elements: E,
    opts?: O,
  ) => build('array', description, { elements }, opts),
  set: <const E extends KongField, const O extends Opts = object>(
    description: string,
    elements: E,
    opts?: O,
  ) => build('set', description, { elements }, opts),
  map: <const K extends KongField, const V extends KongField, const O extends Opts = object>(
    description: string,
    keys: K,
    values: V,
    opts?: O,
  ) => build('map', description, { keys, values }, opts),
  record: <const F extends KongSchemaFields, const O extends Opts = object>(
    description: string,
    fields: F,
    opts?: O,
  ) => build('record', description, { fields }, opts),
};

/**
 * Dotted paths of every declared field, e.g. `jwt.algorithms`, `plans.<value>.tools`.
 * Records nested in a map's values or an array's elements appear under `<key>` / `[]`.
 */
export function schemaFieldPaths(fields: KongSchemaFields, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) {
      const path = prefix ? `${prefix}.${name}` : name;
      out.push(path);
      out.push(...nestedPaths(def, path));
    }
  }
  return out;
}

function nestedPaths(def: KongField, path: string): string[] {
  if (def.type === 'record' && def.fields) return schemaFieldPaths(def.fields, path);
  if (def.type === 'map' && def.values) return nestedPaths(def.values, `${path}.<key>`);
  if ((def.type === 'array' || def.type === 'set') && def.elements) {
    return nestedPaths(def.elements, `${path}[]`);
  }
  return [];
}

/** Every field that lacks a description (a schema test asserts this is empty). */
export function undescribedFields(fields: KongSchemaFields, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) {
      const path = prefix ? `${prefix}.${name}` : name;
      if (!def.description) out.push(path);
      if (def.type === 'record' && def.fields) out.push(...undescribedFields(def.fields, path));
      if (def.type === 'map' && def.values?.type === 'record' && def.values.fields) {
        out.push(...undescribedFields(def.values.fields, `${path}.<key>`));
      }
    }
  }
  return out;
}

/** The config every plugin server's `/metrics` endpoint reads (see lib/metrics/registry.ts). */
export interface MetricsConfig {
  metrics_port: number;
  metrics_host: string;
  metrics_max_tenants: number;
}

/** Schema entries of `MetricsConfig`, the same in every plugin of the chain. */
export const METRICS_FIELDS = [
  {
    metrics_port: field.integer(
      'Port where this plugin server serves Prometheus `/metrics` (on `metrics_host`); 0 disables. One port per plugin server: instances of the plugin on several routes share it.',
      { default: 0, between: [0, 65535], required: true },
    ),
  },
  {
    metrics_host: field.string(
      'Address the metrics endpoint listens on. Use `0.0.0.0` only where the scraper cannot share the gateway host or network namespace.',
      { default: '127.0.0.1', required: true },
    ),
  },
  {
    metrics_max_tenants: field.integer(
      'Distinct tenant label values kept in metrics; later tenants fold into `__other__`.',
      { default: 1000, between: [1, 100000], required: true },
    ),
  },
] as const satisfies KongSchemaFields;
