import test from 'ava';
import { readConfig } from '../../lib/schema/config';
import { field, type KongSchemaFields } from '../../lib/schema/fields';

const schema: KongSchemaFields = [
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
];

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
  const c = readConfig<Record<string, unknown>>(schema, {
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
  t.deepEqual(readConfig<Record<string, unknown>>(schema, null).nested, { a: 3, b: null });
});
