#!/usr/bin/env node
// Build: compile TypeScript to CommonJS in dist/, copy the Lua files (Redis scripts, the
// harness's post-function prelude) beside their
// loader, and lay out the plugin-server directories.
//
// Kong 3.9 takes one plugin per pluginserver_<name> entry (kong/runloop/plugin_servers/
// process.lua takes the first entry of the query command's dump), and kong-js-pluginserver
// require()s every entry of the directory it serves. So:
// - each plugin gets dist/pluginservers/<name>/ holding exactly one file, <name>.js: the
//   directory its query command dumps, and the one it is served from in per-plugin mode;
// - dist/chain/ holds all six entry files: the one process that serves the whole chain
//   (the default; docker/kong-pluginservers.sh, docs/operations.md "Plugin servers").
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
  // Each plugin's own Redis scripts (plugins/<name>/scripts) and snippets.
  copyLua(path.join(root, 'plugins'), path.join(dist, 'plugins'));
  // The harness's Lua prelude for post-function / pre-function (harness/post-function.ts).
  copyLua(path.join(root, 'harness'), path.join(dist, 'harness'));

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
  const chainDir = path.join(dist, 'chain');
  fs.mkdirSync(chainDir, { recursive: true });
  for (const name of names) {
    fs.writeFileSync(
      path.join(chainDir, `${name}.js`),
      `'use strict';\n// Entry of the co-hosted plugin server: one of the chain's ${names.length} plugins served by one process\n` +
        `// (its log phase as the chain runs it: lib/pluginserver/chain-entry.ts).\n` +
        `require('../lib/pluginserver/harden.js');\n` +
        `require('../lib/request/scope-store.js').declareChainProcess();\n` +
        `module.exports = require('../lib/pluginserver/chain-entry.js').chainEntry(require('../plugins/${name}/index.js'));\n`,
    );
    // What Kong's query command dumps in the chain layout: the chain's entry, alone.
    const queryDir = path.join(dist, 'chain-query', name);
    fs.mkdirSync(queryDir, { recursive: true });
    fs.writeFileSync(
      path.join(queryDir, `${name}.js`),
      `'use strict';\n// Query entry of the chain layout: ${name} as dist/chain serves it (docker/kong-pluginservers.sh).\n` +
        `module.exports = require('../../chain/${name}.js');\n`,
    );
  }
  process.stdout.write(
    `built ${names.length} plugin server dir(s): ${names.join(', ')}; and dist/chain/ co-hosting all of them\n`,
  );
}

main();
