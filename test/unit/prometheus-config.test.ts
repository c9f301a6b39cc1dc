/**
 * Prometheus's scrape targets come from kong.yml through one generator
 * (scripts/monitoring/prometheus-config.ts): the compose stack's checked-in config is its
 * output, so it cannot drift from the plugins' metrics ports.
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import {
  dockerPrometheusConfig,
  metricsTargets,
  prometheusConfig,
} from '../../scripts/monitoring/prometheus-config';

const ROOT = path.resolve(__dirname, '..', '..');
const kongYml = readFileSync(path.join(ROOT, 'kong.yml'), 'utf8');

test('docker/prometheus/prometheus.yml is the generator’s output for kong.yml', (t) => {
  t.is(
    readFileSync(path.join(ROOT, 'docker', 'prometheus', 'prometheus.yml'), 'utf8'),
    dockerPrometheusConfig(kongYml),
    'regenerate: npm run -s build && node dist/scripts/monitoring/prometheus-config.js --docker',
  );
});

test('kong.yml gives every plugin of the chain its own metrics target', (t) => {
  const targets = metricsTargets(parse(kongYml));
  const plugins = readdirSync(path.join(ROOT, 'plugins')).sort();
  t.deepEqual(targets.map((x) => x.plugin).sort(), plugins);
  t.is(new Set(targets.map((x) => x.port)).size, targets.length, 'one port per plugin server');
  for (const x of targets) t.is(x.host, '127.0.0.1');
});

test('a plugin on several routes shares one target; a port claimed twice is an error', (t) => {
  const doc = (entries: Array<[string, number]>) => ({
    plugins: entries.map(([name, port]) => ({ name, config: { metrics_port: port } })),
  });
  t.deepEqual(
    metricsTargets(
      doc([
        ['a', 9301],
        ['a', 9301],
        ['b', 0],
        ['c', 9302],
      ]),
    ),
    [
      { plugin: 'a', host: '127.0.0.1', port: 9301 },
      { plugin: 'c', host: '127.0.0.1', port: 9302 },
    ],
  );
  t.throws(
    () =>
      metricsTargets(
        doc([
          ['a', 9301],
          ['b', 9301],
        ]),
      ),
    { message: /both ask/ },
  );
  t.throws(
    () =>
      metricsTargets(
        doc([
          ['a', 9301],
          ['a', 9302],
        ]),
      ),
    { message: /two addresses/ },
  );
});

test('metrics_host 0.0.0.0 is scraped over loopback; the config names the plugin per target', (t) => {
  const targets = metricsTargets({
    plugins: [{ name: 'a', config: { metrics_port: 9301, metrics_host: '0.0.0.0' } }],
  });
  const text = prometheusConfig(targets, { ruleFiles: ['r/*.yml'], scrapeInterval: '5s' });
  const cfg = parse(text) as {
    global: { scrape_interval: string };
    rule_files: string[];
    scrape_configs: Array<{
      static_configs: Array<{ targets: string[]; labels: { plugin: string } }>;
    }>;
  };
  t.is(cfg.global.scrape_interval, '5s');
  t.deepEqual(cfg.rule_files, ['r/*.yml']);
  t.deepEqual(cfg.scrape_configs[0]?.static_configs, [
    { targets: ['127.0.0.1:9301'], labels: { plugin: 'a' } },
  ]);
});
