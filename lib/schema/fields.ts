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

export type KongSchemaFields = Array<Record<string, KongField>>;

type Opts = Omit<KongField, 'type' | 'description'>;

export const field = {
  string: (description: string, opts: Opts = {}): KongField => ({
    type: 'string',
    description,
    ...opts,
  }),
  integer: (description: string, opts: Opts = {}): KongField => ({
    type: 'integer',
    description,
    ...opts,
  }),
  number: (description: string, opts: Opts = {}): KongField => ({
    type: 'number',
    description,
    ...opts,
  }),
  boolean: (description: string, opts: Opts = {}): KongField => ({
    type: 'boolean',
    description,
    ...opts,
  }),
  array: (description: string, elements: KongField, opts: Opts = {}): KongField => ({
    type: 'array',
    description,
    elements,
    ...opts,
  }),
  set: (description: string, elements: KongField, opts: Opts = {}): KongField => ({
    type: 'set',
    description,
    elements,
    ...opts,
  }),
  map: (description: string, keys: KongField, values: KongField, opts: Opts = {}): KongField => ({
    type: 'map',
    description,
    keys,
    values,
    ...opts,
  }),
  record: (description: string, fields: KongSchemaFields, opts: Opts = {}): KongField => ({
    type: 'record',
    description,
    fields,
    ...opts,
  }),
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
export const METRICS_FIELDS: KongSchemaFields = [
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
];
