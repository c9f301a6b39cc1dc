/**
 * The harness holds a plugin's config schema as Kong 3.9.3 does: a plugin schema is a subschema
 * of the plugins entity, and kong/db/schema/entity.lua `make_records_required` makes every record
 * reached through records required unless it says `required: false` (records in map values are
 * not reached). Found when a nullable price tier passed the harness and Kong refused the schema.
 */
import test from 'ava';
import { configFieldsOf, validatePluginConfig } from '../../harness/config/schema';
import type { SchemaField } from '../../harness/types';

const tier = (required?: boolean): SchemaField => ({
  type: 'record',
  ...(required === undefined ? {} : { required }),
  fields: [{ above: { type: 'integer', required: true } }],
});
const schema = (required?: boolean) => ({
  fields: [
    {
      config: {
        type: 'record',
        fields: [
          { price: { type: 'record', fields: [{ tier: tier(required) }] } },
          {
            prices: {
              type: 'map',
              keys: { type: 'string' },
              values: { type: 'record', fields: [{ tier: tier() }] },
            },
          },
        ],
      } as SchemaField,
    },
  ],
});

test('a record inside a record is required unless it says required: false', (t) => {
  const strict = validatePluginConfig(configFieldsOf(schema()), { price: {} });
  t.deepEqual(strict.errors, ['config.price.tier.above: required field missing']);
  const optional = validatePluginConfig(configFieldsOf(schema(false)), { price: {} });
  t.deepEqual(optional.errors, []);
});

test('a record in a map value is not made required', (t) => {
  const r = validatePluginConfig(configFieldsOf(schema(false)), { price: {}, prices: { m: {} } });
  t.deepEqual(r.errors, []);
});
