/**
 * Old field names kept as deprecated aliases, so a kong.yml written for an earlier version
 * still loads. Kong's own plugins do this with `shorthand_fields`, whose `func` is Lua and
 * cannot come from a JS plugin server; what can is Kong's per-field `deprecation` attribute
 * (kong/db/schema/metaschema.lua 3.9.3): plain data, and Kong logs its message as a
 * deprecation warning whenever the field is set (kong/db/schema/init.lua validate_field).
 * `replaced_with` names the new field; readConfig moves the old value there.
 */
import type { KongField } from './fields';

/** The release that drops the deprecated aliases. */
export const ALIASES_REMOVED_IN = '1.0.0';

/**
 * `field` under its old name: no default (unset is null, so only a config that sets it uses
 * it), not required, and marked deprecated in favour of `replacedBy` (a path from the config
 * root, as in Kong's shorthand_fields).
 */
/** A deprecated alias: a field whose `deprecation` is set (ConfigOf leaves it out of the config). */
export type DeprecatedField = KongField & { deprecation: NonNullable<KongField['deprecation']> };

export function deprecatedAlias(
  plugin: string,
  oldPath: readonly string[],
  replacedBy: readonly string[],
  field: KongField,
): DeprecatedField {
  const { default: _default, required: _required, ...rest } = field;
  return {
    ...rest,
    description:
      `Deprecated: use ${replacedBy.join('.')} (same values). ${field.description ?? ''}`.slice(
        0,
        500,
      ),
    deprecation: {
      message: `${plugin}: config.${oldPath.join('.')} is deprecated, please use config.${replacedBy.join('.')} instead`,
      removal_in_version: ALIASES_REMOVED_IN,
      replaced_with: [{ path: [...replacedBy] }],
    },
  };
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Moves each set deprecated field's value to the field that replaced it. Setting both to
 * different values is refused (Kong's validate_deprecation_exclusiveness does the same for
 * shorthands); the new field at its default counts as not set, since Kong fills defaults
 * before the plugin server sees the config.
 */
export function applyAliases(
  config: Obj,
  aliases: ReadonlyArray<{
    oldPath: readonly string[];
    newPath: readonly string[];
    newDefault: unknown;
  }>,
): void {
  for (const a of aliases) {
    const oldParent = walk(config, a.oldPath.slice(0, -1));
    const oldKey = a.oldPath[a.oldPath.length - 1] as string;
    const value = oldParent?.[oldKey];
    if (value === null || value === undefined) continue;
    const newParent = walk(config, a.newPath.slice(0, -1));
    const newKey = a.newPath[a.newPath.length - 1] as string;
    if (!newParent) continue;
    const current = newParent[newKey];
    const setToo = current !== null && current !== undefined && !same(current, a.newDefault);
    if (setToo && !same(current, value)) {
      throw new Error(
        `config.${a.oldPath.join('.')} (deprecated) and config.${a.newPath.join('.')} are both set, to different values: keep config.${a.newPath.join('.')} only`,
      );
    }
    newParent[newKey] = value;
    (oldParent as Obj)[oldKey] = null;
  }
}

function walk(root: Obj, path: readonly string[]): Obj | undefined {
  let at: unknown = root;
  for (const key of path) {
    if (!isObj(at)) return undefined;
    at = at[key];
  }
  return isObj(at) ? at : undefined;
}
