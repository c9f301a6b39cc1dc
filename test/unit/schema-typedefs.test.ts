/**
 * Shared schema pieces (lib/schema/typedefs.ts): the plugins that talk to an embeddings
 * endpoint and to a Milvus collection declare the same fields with the same types, defaults and
 * bounds, differing only where the piece takes a parameter.
 */
import test from 'ava';
import type { KongField, KongSchemaFields } from '../../lib/schema/fields';
import { Schema as Retrieval } from '../../plugins/retrieval-injector/schema';
import { Schema as Cache } from '../../plugins/tenant-cache/schema';
import { Schema as Ratelimit } from '../../plugins/tenant-ratelimit/schema';
import { Schema as Meter } from '../../plugins/token-meter/schema';

function entry(fields: KongSchemaFields, path: string[]): KongField {
  let list = fields;
  let found: KongField | undefined;
  for (const name of path) {
    found = list.find((f) => name in f)?.[name];
    if (!found) throw new Error(`no field ${path.join('.')}`);
    list = found.fields ?? [];
  }
  return found as KongField;
}

/** Each sub-field's name and what Kong checks of it, without its description and default. */
function shape(record: KongField, except: string[] = []): Array<[string, string]> {
  return (record.fields ?? [])
    .map((f) => Object.entries(f)[0] as [string, KongField])
    .filter(([name]) => !except.includes(name))
    .map(([name, f]) => {
      const { description: _d, default: _v, ...rest } = f;
      return [name, JSON.stringify(rest)];
    });
}

test('one embeddings record: the same fields, types and bounds in retrieval and the semantic cache', (t) => {
  const a = entry(Retrieval, ['embeddings']);
  const b = entry(Cache, ['semantic', 'embeddings']);
  t.deepEqual(shape(a), shape(b));
  t.is(shape(a).length, 7);
  // Where they differ, by design: what is embedded, and how long the tenant's cache keeps it.
  t.not(a.description, b.description);
  t.not(
    entry(a.fields ?? [], ['cache_ttl_seconds']).default,
    entry(b.fields ?? [], ['cache_ttl_seconds']).default,
  );
  t.deepEqual(entry(a.fields ?? [], ['timeout_ms']), entry(b.fields ?? [], ['timeout_ms']));
});

test('one set of Milvus collection fields: address, collection, partitions, consistency', (t) => {
  const a = entry(Retrieval, ['milvus']);
  const b = entry(Cache, ['semantic', 'milvus']);
  for (const name of ['address', 'num_partitions'])
    t.deepEqual(entry(a.fields ?? [], [name]), entry(b.fields ?? [], [name]), name);
  for (const name of ['collection', 'consistency_level']) {
    const { description: _x, default: _y, ...ra } = entry(a.fields ?? [], [name]);
    const { description: _z, default: _w, ...rb } = entry(b.fields ?? [], [name]);
    t.deepEqual(ra, rb, name);
  }
});

test('one Redis record: url, key_namespace, timeout_ms alike in the four plugins that use Redis', (t) => {
  const records = { Ratelimit, Cache, Meter, Retrieval };
  const shapes = Object.entries(records).map(
    ([name, schema]) => [name, shape(entry(schema, ['redis']), ['command_timeout_ms'])] as const,
  );
  for (const [name, s] of shapes) {
    t.deepEqual(
      s.map(([f]) => f),
      ['url', 'key_namespace', 'timeout_ms'],
      name,
    );
    t.deepEqual(s, shapes[0]?.[1], name);
  }
  for (const schema of Object.values(records)) {
    const r = entry(schema, ['redis']);
    t.is(entry(r.fields ?? [], ['url']).default, 'redis://127.0.0.1:6379');
    t.is(entry(r.fields ?? [], ['key_namespace']).default, 'kta');
  }
  // The flat fields before the record are deprecated aliases, nowhere required.
  for (const schema of [Cache, Meter]) {
    for (const old of ['redis_url', 'redis_timeout_ms', 'key_namespace']) {
      const f = entry(schema, [old]);
      t.truthy(f.deprecation?.replaced_with?.[0]?.path, old);
      t.is(f.required, undefined, old);
      t.is(f.default, undefined, old);
    }
  }
});
