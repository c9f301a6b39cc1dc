/**
 * A plugin's config type read off its schema, so the two cannot drift: the schema is the one
 * source (Kong validates against it, `readConfig` fills it), and `ConfigOf<typeof Schema>` is
 * the complete object `readConfig` returns. A field the schema changes changes the type, and
 * every use of it is checked by tsc.
 *
 * The rules are `readConfig`'s (lib/schema/config.ts):
 * - a field with a default, or `required: true`, always has a value; any other is `| null`
 *   (Kong stores an unset field as null and the plugin server receives it missing);
 * - `one_of` gives the union of its literals; `array`/`set` an array of the elements' values;
 *   `map` a `Record<string, …>` of its values'; `record` the record's own config;
 * - a deprecated alias (a field with `deprecation`, lib/schema/deprecated.ts) is not part of the
 *   config the plugin reads: `readConfig` has moved its value to the field that replaced it.
 *
 * The fields must keep their literal types: declare them with `field.*` (lib/schema/fields.ts)
 * and write a list of entries as `[...] as const satisfies KongSchemaFields` (or return one
 * from a function without a `KongSchemaFields` annotation, which would widen it to nothing).
 */
import type { KongField, KongSchemaFields } from './fields';

type Flat<T> = { -readonly [K in keyof T]: T[K] } & {};

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (
  x: infer I,
) => void
  ? I
  : never;

/** A field's value before null: what its type and `one_of` allow. */
type BaseValue<F> = F extends { one_of: ReadonlyArray<infer U> }
  ? U
  : F extends { type: 'string' }
    ? string
    : F extends { type: 'integer' | 'number' }
      ? number
      : F extends { type: 'boolean' }
        ? boolean
        : F extends { type: 'array' | 'set'; elements: infer E }
          ? Array<BaseValue<E>>
          : F extends { type: 'map'; values: infer V }
            ? Record<string, BaseValue<V>>
            : F extends { type: 'record'; fields: infer Fs extends KongSchemaFields }
              ? ConfigOf<Fs>
              : unknown;

type Always<F> = F extends { default: infer D }
  ? undefined extends D
    ? F extends { required: true }
      ? true
      : false
    : true
  : F extends { required: true }
    ? true
    : false;

/** A field's value in the config `readConfig` returns. */
export type FieldValue<F> = Always<F> extends true ? BaseValue<F> : BaseValue<F> | null;

type EntryConfig<E> =
  E extends Record<string, KongField>
    ? {
        [
          N in keyof E as string extends N
            ? never // the index signature of KongSchemaFields, met by inference: not a field
            : E[N] extends { deprecation: object }
              ? never
              : N
        ]: FieldValue<E[N]>;
      }
    : never;

/** The config object `readConfig(fields, raw)` returns, as a type. */
export type ConfigOf<Fs extends KongSchemaFields> = Flat<
  UnionToIntersection<EntryConfig<Fs[number]>>
>;

/**
 * Exactly the same type (not merely assignable either way): for the compile-time checks that a
 * type written by hand for readers still says what the schema says.
 */
export type Same<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
