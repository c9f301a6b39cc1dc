/**
 * The front door, locally: the mock OpenAI-compatible upstream on :9000 and a gateway on :8000
 * running the repo's kong.yml with one real kong-js-pluginserver per plugin. The gateway is the
 * real Kong 3.9.3 when one is installed (scripts/services/kong.sh install), else the harness;
 * `GATEWAY=kong|harness` chooses. Redis, Milvus and Prometheus are started by scripts/start.sh
 * first (PROMETHEUS_URL names the Prometheus the banner points at).
 * Ctrl-C stops everything.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { startGateway } from '../harness/index';
import type { Gateway } from '../harness/types';
import { resolvePluginServerMode } from '../harness/pluginserver/layout';
import { locateKong, startKong } from '../kong-runner/index';
import { startMockUpstream } from '../mock-upstream/index';

const root = path.resolve(__dirname, '..', '..');
const port = Number(process.env.GATEWAY_PORT ?? 8000);
const upstreamPort = Number(process.env.UPSTREAM_PORT ?? 9000);

/**
 * The chunk-key secret of retrieval-injector (kong.yml: `encryption.secret_env`): from the
 * environment, else `.run/knowledge.secret`, created once. `npm run knowledge:example` reads
 * the same file, so the example knowledge it loads opens in the plugin.
 */
function ensureKnowledgeSecret(): void {
  if (process.env.KTA_KNOWLEDGE_SECRET) return;
  const file = path.join(root, '.run', 'knowledge.secret');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  process.env.KTA_KNOWLEDGE_SECRET = readFileSync(file, 'utf8').trim();
}

/**
 * The capture secret of token-meter (kong.yml: `capture.secret_env`): from the environment,
 * else `.run/capture.secret`, created once. `npm run replay` reads the same file, so it opens
 * what this front door captured.
 */
function ensureCaptureSecret(): void {
  if (process.env.KTA_CAPTURE_SECRET) return;
  const file = path.join(root, '.run', 'capture.secret');
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  process.env.KTA_CAPTURE_SECRET = readFileSync(file, 'utf8').trim();
}

function loadExampleKnowledge(): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [path.join(root, 'scripts', 'load-example-knowledge.sh')],
      { env: process.env, timeout: 300_000 },
      (err, _stdout, stderr) =>
        err
          ? reject(
              new Error(`loading the example knowledge failed: ${stderr.trim() || err.message}`),
            )
          : resolve(),
    );
  });
}

/** Environment the plugin servers need (nginx passes a worker only what it is told to). */
function pluginServerEnv(): Record<string, string> {
  const names = ['REDIS_URL', 'MILVUS_ADDRESS', 'NODE_ENV'];
  const fromPrefix = Object.keys(process.env).filter((k) => k.startsWith('KTA_'));
  return Object.fromEntries(
    [...names, ...fromPrefix]
      .filter((k) => process.env[k] !== undefined)
      .map((k) => [k, process.env[k] as string]),
  );
}

/**
 * kong.yml gives the local mock's address (127.0.0.1:9000) to the service, the embeddings
 * endpoint and the breaker's upstreams: with another UPSTREAM_PORT, a copy pointed at it.
 */
function declarativeConfig(): string {
  const file = path.join(root, 'kong.yml');
  if (upstreamPort === 9000) return file;
  const text = readFileSync(file, 'utf8')
    .replace(/127\.0\.0\.1:9000\b/g, `127.0.0.1:${upstreamPort}`)
    .replace(/host: 127\.0\.0\.1, port: 9000\b/g, `host: 127.0.0.1, port: ${upstreamPort}`);
  const copy = path.join(root, '.run', `kong.upstream-${upstreamPort}.yml`);
  mkdirSync(path.dirname(copy), { recursive: true });
  writeFileSync(copy, text);
  process.env.KTA_EMBEDDINGS_URL ??= `http://127.0.0.1:${upstreamPort}/v1/embeddings`;
  return copy;
}

/**
 * Traces (kong.yml's opentelemetry plugin, docs/operations.md#tracing): Kong makes spans only
 * when kong.conf enables its instrumentations. `TRACING_SAMPLING_RATE=1 npm start` turns them on
 * at that rate (0 to 1); spans go to kong.yml's traces_endpoint, where
 * `scripts/services/otlp-receiver.sh run` prints them. Unset: off (no collector is assumed).
 */
function tracingConf(): Record<string, string> | undefined {
  const rate = process.env.TRACING_SAMPLING_RATE;
  if (rate === undefined || rate === '') return undefined;
  const n = Number(rate);
  if (!Number.isFinite(n) || n < 0 || n > 1)
    throw new Error(`TRACING_SAMPLING_RATE must be a number from 0 to 1, got '${rate}'`);
  return { tracing_instrumentations: 'all', tracing_sampling_rate: String(n) };
}

async function main(): Promise<void> {
  ensureKnowledgeSecret();
  ensureCaptureSecret();
  const pluginsRoot = path.join(root, 'dist', 'pluginservers');
  const pluginServers = Object.fromEntries(
    readdirSync(pluginsRoot).map((name) => [name, path.join(pluginsRoot, name)]),
  );
  const wanted = process.env.GATEWAY;
  const useKong = wanted === 'kong' || (wanted !== 'harness' && locateKong() !== undefined);
  const upstream = await startMockUpstream({ port: upstreamPort });
  const logger = (line: string) => process.stderr.write(`${line}\n`);
  const opts = {
    config: declarativeConfig(),
    pluginServers,
    port,
    env: pluginServerEnv(),
    logger,
  };
  let gateway: Gateway;
  let which: string;
  try {
    if (useKong) {
      const kongConf = tracingConf();
      const kong = await startKong({
        ...opts,
        workers: 2,
        label: 'npm-start',
        ...(kongConf ? { kongConf } : {}),
      });
      gateway = kong;
      which = `the real Kong 3.9.3 (2 workers; its log: ${path.join(kong.prefix, 'logs', 'error.log')})`;
    } else {
      gateway = await startGateway(opts);
      which =
        'the harness (Kong in miniature: no Kong 3.9 is installed; `scripts/services/kong.sh install`)';
    }
  } catch (e) {
    await upstream.close();
    throw e;
  }
  // The example tenants' knowledge (examples/knowledge/), embedded through the mock upstream
  // and stored in Milvus, so retrieval has something to find; re-loading replaces, never doubles.
  try {
    await loadExampleKnowledge();
  } catch (e) {
    await gateway.close();
    await upstream.close();
    throw e;
  }
  process.stdout.write(
    [
      '',
      `front door ready on ${which}`,
      `  gateway ${gateway.url}, mock upstream ${upstream.url}`,
      `  plugin servers: ${Object.keys(pluginServers).join(', ')} (${
        resolvePluginServerMode(undefined) === 'chain'
          ? 'one process for the chain'
          : 'one process each'
      }; KTA_PLUGINSERVER_MODE=chain|per-plugin)`,
      ...(process.env.PROMETHEUS_URL
        ? [
            `  prometheus ${process.env.PROMETHEUS_URL} (targets: /targets, alerts: /alerts), scraping every plugin server's metrics port`,
            `  dashboard for Grafana: docker/grafana/dashboards/tenants.json (docs/operations.md)`,
          ]
        : []),
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
