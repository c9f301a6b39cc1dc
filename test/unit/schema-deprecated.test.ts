/**
 * Deprecated aliases in readConfig (lib/schema/deprecated.ts): the old field's value moves to
 * the field that replaced it; both set to different values is refused; the new field at its
 * default counts as unset (Kong fills defaults before the plugin server sees the config).
 */
import test from 'ava';
import { aliasesOf, readConfig } from '../../lib/schema/config';
import { deprecatedAlias } from '../../lib/schema/deprecated';
import { field, type KongSchemaFields } from '../../lib/schema/fields';

const MODE = field.string('What happens when the store is away.', {
  default: 'refuse',
  one_of: ['refuse', 'local'],
  required: true,
});
const TIMEOUT = field.integer('Deadline of one call, in milliseconds.', {
  default: 250,
  required: true,
});

const SCHEMA: KongSchemaFields = [
  {
    store: field.record(
      'The store.',
      [
        { timeout_ms: TIMEOUT },
        {
          old_timeout_ms: deprecatedAlias(
            'p',
            ['store', 'old_timeout_ms'],
            ['store', 'timeout_ms'],
            TIMEOUT,
          ),
        },
      ],
      { required: true },
    ),
  },
  { mode: MODE },
  { old_mode: deprecatedAlias('p', ['old_mode'], ['mode'], MODE) },
];

type Config = {
  mode: string;
  old_mode: unknown;
  store: { timeout_ms: number; old_timeout_ms: unknown };
};

/** The whole object readConfig returns, old names included (its type leaves them out). */
const read = (raw: unknown) => readConfig(SCHEMA, raw) as unknown as Config;

test('an old field moves to its replacement, nested or not, and reads as unset', (t) => {
  const c = read({ old_mode: 'local', store: { old_timeout_ms: 100 } });
  t.is(c.mode, 'local');
  t.is(c.store.timeout_ms, 100);
  t.is(c.old_mode, null);
  t.is(c.store.old_timeout_ms, null);
});

test('without the old field, the new one and its default apply', (t) => {
  t.like(read({}), { mode: 'refuse', store: { timeout_ms: 250 } });
  t.like(read({ mode: 'local' }), { mode: 'local' });
});

test('the new field at its default counts as unset (Kong filled it): the old value applies', (t) => {
  t.is(read({ mode: 'refuse', old_mode: 'local' }).mode, 'local');
});

test('both set to the same value: loads', (t) => {
  t.is(read({ mode: 'local', old_mode: 'local' }).mode, 'local');
});

test('both set to different values: refused, naming both', (t) => {
  const e = t.throws(() => read({ store: { timeout_ms: 500, old_timeout_ms: 100 } }));
  t.regex(
    e!.message,
    /config\.store\.old_timeout_ms \(deprecated\) and config\.store\.timeout_ms are both set/,
  );
});

test('the alias carries Kong’s deprecation attribute, no default and is not required', (t) => {
  const alias = deprecatedAlias('p', ['old_mode'], ['mode'], MODE);
  t.is(alias.default, undefined);
  t.is(alias.required, undefined);
  t.deepEqual(alias.one_of, ['refuse', 'local']);
  t.regex(
    alias.deprecation!.message,
    /^p: config\.old_mode is deprecated, please use config\.mode instead$/,
  );
  t.truthy(alias.deprecation!.removal_in_version);
  t.deepEqual(alias.deprecation!.replaced_with, [{ path: ['mode'] }]);
});

test('an alias naming a field that does not exist is a programming error, found at once', (t) => {
  t.throws(() => aliasesOf([{ x: deprecatedAlias('p', ['x'], ['nowhere'], MODE) }]), {
    message: /no field nowhere/,
  });
});

test('tenant-cache: a deprecated field and its replacement at odds disable caching, never a throw', async (t) => {
  const { startUp } = await import('../../plugins/tenant-cache/ready');
  const s = startUp({
    redis_url: 'redis://127.0.0.1:1',
    redis: { url: 'redis://127.0.0.1:2' },
    ephemeral_key_when_missing: true,
    metrics_port: 0,
  });
  t.false(s.ok);
  t.regex(
    s.ok ? '' : s.reason,
    /config\.redis_url \(deprecated\) and config\.redis\.url are both set/,
  );
  // Labelled and answered with the defaults meanwhile.
  t.is(s.config.metrics_max_tenants > 0, true);
});
