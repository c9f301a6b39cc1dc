import test from 'ava';
import { readConfig } from '../../lib/schema/config';
import type { ConfigOf, Same } from '../../lib/schema/derive';
import { deprecatedAlias } from '../../lib/schema/deprecated';
import { field, type KongSchemaFields } from '../../lib/schema/fields';

const schema = [
  { name: field.string('n', { default: 'x' }) },
  { optional: field.string('o') },
  {
    nested: field.record(
      'r',
      [{ a: field.integer('a', { default: 3 }) }, { b: field.string('b') }],
      { required: true },
    ),
  },
  {
    plans: field.map(
      'm',
      field.string('k'),
      field.record('p', [{ w: field.number('w', { default: 1 }) }, { p: field.string('p') }]),
    ),
  },
  { list: field.array('l', field.record('e', [{ q: field.string('q') }])) },
] as const satisfies KongSchemaFields;

test('missing fields become defaults or null, in records, maps and arrays', (t) => {
  t.deepEqual(readConfig(schema, { plans: { pro: {} }, list: [{}] }), {
    name: 'x',
    optional: null,
    nested: { a: 3, b: null },
    plans: { pro: { w: 1, p: null } },
    list: [{ q: null }],
  });
});

test('given values are kept', (t) => {
  const c = readConfig(schema, {
    name: 'y',
    optional: 'z',
    nested: { a: 5, b: 'b' },
  });
  t.is(c.name, 'y');
  t.is(c.optional, 'z');
  t.deepEqual(c.nested, { a: 5, b: 'b' });
  t.is(c.plans, null);
});

test('a non-object config reads as all defaults', (t) => {
  t.deepEqual(readConfig(schema, null).nested, { a: 3, b: null });
});

/**
 * The config type is read off the schema (lib/schema/derive.ts), by readConfig's own rules: a
 * default or `required` means always set, anything else may be null; one_of is a union; maps,
 * arrays and records nest; a deprecated alias is not in it. Checked by tsc (`npm run lint`):
 * each `Same` below is `false`, and this file fails to compile, when a rule breaks.
 */
test('the config type is the schema’s: defaults and required are set, the rest nullable', (t) => {
  const c = readConfig(schema, {});
  const exact: Same<
    typeof c,
    {
      name: string;
      optional: string | null;
      nested: { a: number; b: string | null };
      plans: Record<string, { w: number; p: string | null }> | null;
      list: Array<{ q: string | null }> | null;
    }
  > = true;
  t.true(exact);
  t.deepEqual(c.nested, { a: 3, b: null });
  const more = [
    { mode: field.string('m', { one_of: ['a', 'b'], default: 'a' }) },
    { tags: field.set('t', field.string('tag', { one_of: ['x', 'y'] }), { required: true }) },
    { old: deprecatedAlias('p', ['old'], ['mode'], field.string('m')) },
  ] as const satisfies KongSchemaFields;
  const derived: Same<ConfigOf<typeof more>, { mode: 'a' | 'b'; tags: Array<'x' | 'y'> }> = true;
  t.true(derived);
  t.is(more.length, 3);
  // Positive control: a wrong expectation is told apart.
  const wrong: Same<ConfigOf<typeof more>, { mode: string; tags: string[] }> = false;
  t.false(wrong);
});
