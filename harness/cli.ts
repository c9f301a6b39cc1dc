// node dist/harness/cli.js --config kong.yml --plugins-root dist/pluginservers --port 8000
// External plugins are the directories under --plugins-root that kong.yml uses (name -> <root>/<name>).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readDeclarative } from './config/declarative';
import { startGateway } from './gateway';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'kong.yml' },
      'plugins-root': { type: 'string', default: 'dist/pluginservers' },
      port: { type: 'string', default: '8000' },
      host: { type: 'string', default: '127.0.0.1' },
      quiet: { type: 'boolean', default: false },
    },
  });
  const configPath = resolve(values.config as string);
  const root = resolve(values['plugins-root'] as string);
  const pluginServers: Record<string, string> = {};
  for (const p of readDeclarative(configPath).plugins) {
    if (p.name === 'key-auth' || p.name === 'post-function' || p.name === 'pre-function') continue;
    const dir = join(root, p.name);
    if (!existsSync(dir))
      throw new Error(`plugin '${p.name}' is used in ${configPath} but ${dir} does not exist`);
    pluginServers[p.name] = dir;
  }
  const gw = await startGateway({
    config: configPath,
    pluginServers,
    host: values.host as string,
    port: Number(values.port),
    logger: values.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    `kong harness ready on ${gw.url} (plugins: ${Object.keys(pluginServers).join(', ') || 'none'})\n`,
  );
  const stop = () => {
    void gw.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
