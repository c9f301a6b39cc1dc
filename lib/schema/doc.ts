/**
 * The configuration reference of a plugin README, generated from its Schema so the two
 * cannot drift: `npm run docs:config` rewrites the block between the markers, and a test
 * fails when a README's block differs from what the schema generates.
 */
import type { KongField, KongSchemaFields } from './fields';

export const CONFIG_BLOCK_START =
  '<!-- config:start (generated from the schema by `npm run docs:config`) -->\n<!-- prettier-ignore-start -->';
export const CONFIG_BLOCK_END = '<!-- prettier-ignore-end -->\n<!-- config:end -->';

function typeOf(def: KongField): string {
  if ((def.type === 'array' || def.type === 'set') && def.elements) {
    return `${def.type} of ${def.elements.type}`;
  }
  if (def.type === 'map' && def.keys && def.values)
    return `map ${def.keys.type} → ${def.values.type}`;
  return def.type;
}

function constraints(def: KongField): string[] {
  const out: string[] = [];
  const inner = def.elements ?? def;
  if (def.required) out.push('required');
  if (inner.one_of) out.push(`one of: ${inner.one_of.map((v) => `\`${String(v)}\``).join(', ')}`);
  if (def.between) out.push(`between ${def.between[0]} and ${def.between[1]}`);
  if (def.gt !== undefined) out.push(`> ${def.gt}`);
  if (def.len_min !== undefined) out.push(`at least ${def.len_min}`);
  if (inner.len_min !== undefined && inner !== def)
    out.push(`each at least ${inner.len_min} chars`);
  if (def.len_max !== undefined) out.push(`at most ${def.len_max}`);
  if (def.match) out.push(`matches \`${def.match}\``);
  if (inner.referenceable) out.push('vault reference allowed');
  return out;
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function rows(fields: KongSchemaFields, prefix: string): string[] {
  const out: string[] = [];
  for (const entry of fields) {
    for (const [name, def] of Object.entries(entry)) {
      const path = prefix ? `${prefix}.${name}` : name;
      const dflt = def.default === undefined ? '' : `\`${JSON.stringify(def.default)}\``;
      const notes = constraints(def);
      const desc = [def.description ?? '', notes.length ? `(${notes.join('; ')})` : '']
        .filter(Boolean)
        .join(' ');
      out.push(`| \`${path}\` | ${typeOf(def)} | ${dflt} | ${cell(desc)} |`);
      if (def.type === 'record' && def.fields) out.push(...rows(def.fields, path));
      if (def.type === 'map' && def.values?.type === 'record' && def.values.fields) {
        out.push(...rows(def.values.fields, `${path}.<key>`));
      }
    }
  }
  return out;
}

export function configReference(fields: KongSchemaFields): string {
  return [
    CONFIG_BLOCK_START,
    '| field | type | default | description |',
    '|---|---|---|---|',
    ...rows(fields, ''),
    CONFIG_BLOCK_END,
  ].join('\n');
}

/** Replaces the generated block of a README text (throws when the markers are missing). */
export function withConfigReference(readme: string, fields: KongSchemaFields): string {
  const start = readme.indexOf(CONFIG_BLOCK_START);
  const end = readme.indexOf(CONFIG_BLOCK_END);
  if (start < 0 || end < start) throw new Error('README has no config block markers');
  return (
    readme.slice(0, start) + configReference(fields) + readme.slice(end + CONFIG_BLOCK_END.length)
  );
}

/** The generated block as it stands in a README, or null. */
export function currentConfigReference(readme: string): string | null {
  const start = readme.indexOf(CONFIG_BLOCK_START);
  const end = readme.indexOf(CONFIG_BLOCK_END);
  if (start < 0 || end < start) return null;
  return readme.slice(start, end + CONFIG_BLOCK_END.length);
}
