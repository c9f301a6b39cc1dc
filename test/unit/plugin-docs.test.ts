import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { configReference, currentConfigReference } from '../../lib/schema/doc';
import {
  schemaFieldPaths,
  undescribedFields,
  type KongSchemaFields,
} from '../../lib/schema/fields';

const root = path.resolve(__dirname, '..', '..');
const plugins = readdirSync(path.join(root, 'plugins')).filter((n) =>
  existsSync(path.join(root, 'plugins', n, 'index.ts')),
);

test('there is at least one plugin', (t) => {
  t.true(plugins.includes('tenant-auth'));
});

for (const name of plugins) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(root, 'plugins', name, 'index')) as {
    Schema: KongSchemaFields;
    Name: string;
    Priority: number;
    Version: string;
  };

  test(`${name}: exports Name, Version, Priority and Schema as kong-js-pluginserver reads them`, (t) => {
    t.is(mod.Name, name);
    t.regex(mod.Version, /^\d+\.\d+\.\d+$/);
    t.true(Number.isInteger(mod.Priority));
    t.true(Array.isArray(mod.Schema));
  });

  test(`${name}: every schema field has a description`, (t) => {
    t.deepEqual(undescribedFields(mod.Schema), []);
  });

  test(`${name}: README documents every config field, generated from the schema`, (t) => {
    const readme = readFileSync(path.join(root, 'plugins', name, 'README.md'), 'utf8');
    const block = currentConfigReference(readme);
    t.truthy(block, 'README has the config block markers');
    for (const field of schemaFieldPaths(mod.Schema)) {
      t.true(block!.includes(`| \`${field}\` |`), `README lists ${field}`);
    }
    t.is(block, configReference(mod.Schema), 'README block is current: run `npm run docs:config`');
  });
}
