/**
 * Rewrites the configuration reference block of every plugin README from the plugin's
 * Schema. Run: `npm run docs:config`.
 */
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { withConfigReference } from '../lib/schema/doc';
import type { KongSchemaFields } from '../lib/schema/fields';

const root = path.resolve(__dirname, '..');
for (const name of readdirSync(path.join(root, 'plugins'))) {
  const readme = path.join(root, 'plugins', name, 'README.md');
  if (!existsSync(readme)) continue;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(root, 'plugins', name, 'index')) as { Schema: KongSchemaFields };
  writeFileSync(readme, withConfigReference(readFileSync(readme, 'utf8'), mod.Schema));
  process.stdout.write(`updated ${path.relative(root, readme)}\n`);
}
