/**
 * The one generator of Prometheus's configuration, from a Kong declarative config (kong.yml):
 * one scrape target per plugin server, at the `metrics_port` (and `metrics_host`) its plugin
 * entries declare, labelled with the plugin's name. The compose stack's
 * docker/prometheus/prometheus.yml and the local one `npm start` runs
 * (scripts/services/prometheus.sh writes .run/prometheus/prometheus.yml) both come from here,
 * so neither can drift from kong.yml (test/unit/prometheus-config.test.ts checks the checked-in
 * file).
 *
 *   node dist/scripts/monitoring/prometheus-config.js --kong-yml kong.yml \
 *     --rules '/abs/docker/prometheus/rules/*.yml' [--scrape-interval 5s] \
 *     [--alertmanager 127.0.0.1:9093] [--out file]
 *   node dist/scripts/monitoring/prometheus-config.js --docker   # rewrites the compose file
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';

export interface ScrapeTarget {
  plugin: string;
  host: string;
  port: number;
}

export interface PrometheusConfigOptions {
  /** Rule files (globs allowed in the last path element), relative to the config file or absolute. */
  ruleFiles: string[];
  scrapeInterval?: string;
  evaluationInterval?: string;
  /** Comment lines written above the YAML. */
  header?: string[];
  /** Alertmanagers (host:port) the firing alerts are sent to; none: no `alerting` section. */
  alertmanagers?: string[];
}

export const JOB_NAME = 'kong-tenant-plugins';

interface PluginEntry {
  name?: unknown;
  config?: unknown;
}

/**
 * The metrics endpoints a declarative config asks for: every plugin entry with a `metrics_port`
 * above 0. Entries of one plugin on several routes share their plugin server, hence one port;
 * two plugins on one port, or one plugin on two ports, is a configuration error.
 */
export function metricsTargets(doc: unknown): ScrapeTarget[] {
  const plugins = (doc as { plugins?: unknown } | null)?.plugins;
  if (!Array.isArray(plugins)) return [];
  const byPlugin = new Map<string, ScrapeTarget>();
  const byAddress = new Map<string, string>();
  for (const entry of plugins as PluginEntry[]) {
    const name = entry.name;
    const config = entry.config as Record<string, unknown> | undefined;
    if (typeof name !== 'string' || !config) continue;
    const port = config.metrics_port;
    if (typeof port !== 'number' || port === 0) continue;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new Error(`${name}: metrics_port ${String(port)} is not a port`);
    }
    const host = typeof config.metrics_host === 'string' ? config.metrics_host : '127.0.0.1';
    // A plugin server listening on every interface is still scraped over loopback.
    const scrapeHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    const target = { plugin: name, host: scrapeHost, port };
    const known = byPlugin.get(name);
    if (known) {
      if (known.port !== port || known.host !== scrapeHost) {
        throw new Error(`${name}: one plugin server cannot serve metrics on two addresses`);
      }
      continue;
    }
    const address = `${scrapeHost}:${port}`;
    const other = byAddress.get(address);
    if (other) throw new Error(`${name} and ${other} both ask for metrics on ${address}`);
    byAddress.set(address, name);
    byPlugin.set(name, target);
  }
  return [...byPlugin.values()];
}

function hostPort(t: ScrapeTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

export function prometheusConfig(targets: ScrapeTarget[], opts: PrometheusConfigOptions): string {
  const config = {
    global: {
      scrape_interval: opts.scrapeInterval ?? '15s',
      evaluation_interval: opts.evaluationInterval ?? opts.scrapeInterval ?? '15s',
    },
    rule_files: opts.ruleFiles,
    ...(opts.alertmanagers?.length
      ? { alerting: { alertmanagers: [{ static_configs: [{ targets: opts.alertmanagers }] }] } }
      : {}),
    scrape_configs: [
      {
        job_name: JOB_NAME,
        static_configs: targets.map((t) => ({
          targets: [hostPort(t)],
          labels: { plugin: t.plugin },
        })),
      },
    ],
  };
  const header = (opts.header ?? []).map((l) => `# ${l}`.trimEnd()).join('\n');
  return `${header ? `${header}\n` : ''}${stringify(config)}`;
}

/** The repository: two levels up from the source, three from its compiled copy in dist/. */
const twoUp = path.resolve(__dirname, '..', '..');
export const ROOT = path.basename(twoUp) === 'dist' ? path.dirname(twoUp) : twoUp;

/** Where the compose stack's Alertmanager listens: in Kong's network namespace, like Prometheus. */
export const DOCKER_ALERTMANAGER = '127.0.0.1:9093';

/** The compose stack's config: kong.yml's targets inside Kong's network namespace. */
export function dockerPrometheusConfig(kongYml: string): string {
  return prometheusConfig(metricsTargets(parse(kongYml)), {
    ruleFiles: ['rules/*.yml'],
    scrapeInterval: '15s',
    alertmanagers: [DOCKER_ALERTMANAGER],
    header: [
      'GENERATED from kong.yml by scripts/monitoring/prometheus-config.ts: do not edit.',
      'Regenerate: npm run -s build && node dist/scripts/monitoring/prometheus-config.js --docker',
      '',
      "The compose stack's Prometheus shares Kong's network namespace: it scrapes every plugin",
      "server's /metrics on 127.0.0.1:<metrics_port> of kong.yml. The alert rules are rules/*.yml",
      'beside this file (mounted together at /etc/prometheus). Alerts go to the Alertmanager',
      'sidecar (docker/alertmanager/alertmanager.yml) on 127.0.0.1:9093 of the same namespace.',
    ],
  });
}

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function main(args: string[]): void {
  if (args.includes('--docker')) {
    const out = path.join(ROOT, 'docker', 'prometheus', 'prometheus.yml');
    writeFileSync(out, dockerPrometheusConfig(readFileSync(path.join(ROOT, 'kong.yml'), 'utf8')));
    process.stdout.write(`wrote ${out}\n`);
    return;
  }
  const kongYml = arg(args, '--kong-yml') ?? path.join(ROOT, 'kong.yml');
  const rules = arg(args, '--rules') ?? path.join(ROOT, 'docker', 'prometheus', 'rules', '*.yml');
  const interval = arg(args, '--scrape-interval');
  const alertmanager = arg(args, '--alertmanager');
  const text = prometheusConfig(metricsTargets(parse(readFileSync(kongYml, 'utf8'))), {
    ruleFiles: [rules],
    ...(interval ? { scrapeInterval: interval } : {}),
    ...(alertmanager ? { alertmanagers: [alertmanager] } : {}),
    header: [`GENERATED from ${kongYml} by scripts/monitoring/prometheus-config.ts.`],
  });
  const out = arg(args, '--out');
  if (out) writeFileSync(out, text);
  else process.stdout.write(text);
}

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`prometheus-config: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
