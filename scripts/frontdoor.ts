/**
 * The front door, locally: the mock OpenAI-compatible upstream on :9000 and the harness
 * gateway on :8000 running the repo's kong.yml with one real kong-js-pluginserver per plugin.
 * Redis and Milvus are started by scripts/start.sh before this runs. Ctrl-C stops everything.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { startGateway } from '../harness/index';
import { startMockUpstream } from '../mock-upstream/index';

const root = path.resolve(__dirname, '..', '..');
const port = Number(process.env.GATEWAY_PORT ?? 8000);
const upstreamPort = Number(process.env.UPSTREAM_PORT ?? 9000);

async function main(): Promise<void> {
  const pluginsRoot = path.join(root, 'dist', 'pluginservers');
  const pluginServers = Object.fromEntries(
    readdirSync(pluginsRoot).map((name) => [name, path.join(pluginsRoot, name)]),
  );
  const upstream = await startMockUpstream({ port: upstreamPort });
  const gateway = await startGateway({
    config: path.join(root, 'kong.yml'),
    pluginServers,
    port,
    logger: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    [
      '',
      `front door ready: gateway ${gateway.url}, mock upstream ${upstream.url}`,
      `plugin servers: ${Object.keys(pluginServers).join(', ')}`,
      '',
      'try (tenant acme, plan pro):',
      `  curl -s ${gateway.url}/v1/chat/completions -H 'apikey: acme-demo-key' -H 'content-type: application/json' \\`,
      `       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'`,
      'and tenant globex (plan free) with apikey globex-demo-key; no key gives 401.',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  );
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await gateway.close();
    await upstream.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(
    `front door failed to start: ${e instanceof Error ? e.message : String(e)}\n`,
  );
  process.exit(1);
});
