#!/usr/bin/env node
// Runs `kong-js-pluginserver -d <dir> --dump-all-plugins` on every plugin-server directory the
// build emitted, exactly as Kong's pluginserver_<name>_query_cmd would, and checks that stdout
// is valid JSON naming exactly that one plugin (kong/runloop/plugin_servers/process.lua parses
// it with cjson and takes the first entry); then that dist/chain/, the co-hosted server, serves
// every one of them alike.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const serversRoot = path.join(root, 'dist', 'pluginservers');
const bin = path.join(root, 'node_modules', '.bin', 'kong-js-pluginserver');
let failures = 0;
for (const name of fs.readdirSync(serversRoot).sort()) {
  const dir = path.join(serversRoot, name);
  const out = execFileSync(bin, ['-d', dir, '--dump-all-plugins'], { encoding: 'utf8' });
  let dump;
  try {
    dump = JSON.parse(out);
  } catch (e) {
    console.error(`${name}: stdout is not JSON: ${e.message}\n${out.slice(0, 500)}`);
    failures++;
    continue;
  }
  const plugins = dump.Plugins || dump;
  if (!Array.isArray(plugins) || plugins.length !== 1 || plugins[0].Name !== name) {
    console.error(
      `${name}: expected exactly one plugin named ${name}, got ${JSON.stringify(plugins.map((p) => p.Name))}`,
    );
    failures++;
    continue;
  }
  const p = plugins[0];
  console.log(
    `${name}: ok (priority ${p.Priority}, version ${p.Version}, phases ${p.Phases.join(',')})`,
  );
}
// The co-hosted server (the default layout): its directory serves every plugin above, and each
// of them with the same priority, version and phases as its own directory's dump.
const chainDir = path.join(root, 'dist', 'chain');
const perPlugin = fs.readdirSync(serversRoot).sort();
try {
  const out = execFileSync(bin, ['-d', chainDir, '--dump-all-plugins'], { encoding: 'utf8' });
  const dump = JSON.parse(out);
  const plugins = dump.Plugins || dump;
  const names = plugins.map((p) => p.Name).sort();
  if (JSON.stringify(names) !== JSON.stringify(perPlugin)) {
    console.error(
      `dist/chain: serves ${JSON.stringify(names)}, expected ${JSON.stringify(perPlugin)}`,
    );
    failures++;
  } else {
    // The chain runs one log phase for several plugins (lib/pluginserver/chain-entry.ts):
    // each is served as its own directory serves it but for that; and what Kong reads of it
    // (its query directory, dist/chain-query/<name>) is exactly what the chain serves.
    const { LOG_IN_CHAIN } = require(path.join(root, 'dist/lib/pluginserver/chain-entry.js'));
    const { CHAIN_LOG_OWNER } = require(path.join(root, 'dist/lib/request/log-holds.js'));
    const dumpOf = (dir) => {
      const d = JSON.parse(
        execFileSync(bin, ['-d', dir, '--dump-all-plugins'], { encoding: 'utf8' }),
      );
      return (d.Plugins || d)[0];
    };
    for (const p of plugins) {
      const o = dumpOf(path.join(serversRoot, p.Name));
      const q = dumpOf(path.join(root, 'dist', 'chain-query', p.Name));
      let phases = o.Phases.filter((ph) => !(ph === 'log' && LOG_IN_CHAIN.has(p.Name)));
      if (p.Name === CHAIN_LOG_OWNER && !phases.includes('log')) phases = [...phases, 'log'];
      const same = (a, b) => [...a].sort().join() === [...b].sort().join();
      if (o.Priority !== p.Priority || o.Version !== p.Version || !same(phases, p.Phases)) {
        console.error(
          `dist/chain: ${p.Name} serves phases ${p.Phases.join(',')}, expected ${phases.join(',')}`,
        );
        failures++;
      }
      if (q.Name !== p.Name || q.Priority !== p.Priority || !same(q.Phases, p.Phases)) {
        console.error(`dist/chain-query/${p.Name}: does not dump what dist/chain serves`);
        failures++;
      }
    }
    console.log(`dist/chain: ok (one process serving ${names.join(', ')})`);
  }
} catch (e) {
  console.error(`dist/chain: ${e.message}`);
  failures++;
}
process.exit(failures ? 1 : 0);
