#!/usr/bin/env node
// Build: compile TypeScript to CommonJS in dist/, copy the Redis Lua scripts beside their
// loader, and lay out one plugin-server directory per plugin.
//
// Kong 3.9 runs one plugin per plugin server (kong/runloop/plugin_servers/process.lua takes
// the first entry of --dump-all-plugins), and kong-js-pluginserver require()s every entry of
// the directory it serves. So each plugin gets dist/pluginservers/<name>/ holding exactly one
// file, <name>.js, that re-exports the compiled plugin module.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');

function copyLua(srcDir, dstDir) {
  if (!fs.existsSync(srcDir)) return;
  for (const entry of fs.readdirSync(srcDir, { withFileTypes: true })) {
    const src = path.join(srcDir, entry.name);
    const dst = path.join(dstDir, entry.name);
    if (entry.isDirectory()) copyLua(src, dst);
    else if (entry.name.endsWith('.lua')) {
      fs.mkdirSync(dstDir, { recursive: true });
      fs.copyFileSync(src, dst);
    }
  }
}

function pluginNames() {
  const dir = path.join(root, 'plugins');
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, 'index.ts')))
    .map((e) => e.name)
    .sort();
}

function main() {
  fs.rmSync(dist, { recursive: true, force: true });
  const tsc = require.resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  copyLua(path.join(root, 'lib'), path.join(dist, 'lib'));

  const names = pluginNames();
  for (const name of names) {
    const serverDir = path.join(dist, 'pluginservers', name);
    fs.mkdirSync(serverDir, { recursive: true });
    fs.writeFileSync(
      path.join(serverDir, `${name}.js`),
      `'use strict';\n// Plugin-server entry: the only file in this directory (one plugin per server).\n` +
        `// The hardening runs first: it patches kong-pdk's message decoder (lib/pluginserver/harden.ts).\n` +
        `require('../../lib/pluginserver/harden.js');\n` +
        `module.exports = require('../../plugins/${name}/index.js');\n`,
    );
  }
  process.stdout.write(`built ${names.length} plugin server dir(s): ${names.join(', ')}\n`);
}

main();
