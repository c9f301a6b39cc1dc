/**
 * Alertmanager's configuration as the repo ships it (docker/alertmanager/alertmanager.yml),
 * with the two things a deployment changes: where the webhook receivers post, and (for the
 * alert test) how long notifications wait. scripts/services/alertmanager.sh writes
 * .run/alertmanager/alertmanager.yml with it; test/plugins/alerting.test.ts its own copy.
 *
 *   node dist/scripts/monitoring/alertmanager-config.js [--webhook-url URL] [--out file]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { ROOT } from './prometheus-config';

export const ALERTMANAGER_CONFIG = path.join(ROOT, 'docker', 'alertmanager', 'alertmanager.yml');

export interface AlertmanagerOptions {
  /** Replaces the url of every webhook receiver. */
  webhookUrl?: string;
  /** Route timers (the root route's; child routes inherit them), e.g. '1s'. */
  groupWait?: string;
  groupInterval?: string;
  repeatInterval?: string;
}

interface Route {
  group_wait?: string;
  group_interval?: string;
  repeat_interval?: string;
  routes?: Route[];
}

interface Config {
  route: Route;
  receivers: Array<{ name: string; webhook_configs?: Array<{ url: string }> }>;
}

/** `text` (the shipped YAML) with the options applied, as YAML. */
export function alertmanagerConfig(text: string, opts: AlertmanagerOptions = {}): string {
  const config = parse(text) as Config;
  if (!config?.route || !Array.isArray(config.receivers)) {
    throw new Error('not an Alertmanager configuration (route and receivers expected)');
  }
  if (opts.webhookUrl !== undefined) {
    const url = new URL(opts.webhookUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new Error(`webhook url must be http(s), got ${opts.webhookUrl}`);
    }
    for (const r of config.receivers) for (const w of r.webhook_configs ?? []) w.url = url.href;
  }
  if (opts.groupWait) config.route.group_wait = opts.groupWait;
  if (opts.groupInterval) config.route.group_interval = opts.groupInterval;
  if (opts.repeatInterval) config.route.repeat_interval = opts.repeatInterval;
  return stringify(config);
}

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (require.main === module) {
  try {
    const args = process.argv.slice(2);
    const url = arg(args, '--webhook-url');
    const text = alertmanagerConfig(readFileSync(ALERTMANAGER_CONFIG, 'utf8'), {
      ...(url ? { webhookUrl: url } : {}),
    });
    const header = `# GENERATED from ${ALERTMANAGER_CONFIG} by scripts/monitoring/alertmanager-config.ts.\n`;
    const out = arg(args, '--out');
    if (out) writeFileSync(out, header + text);
    else process.stdout.write(header + text);
  } catch (e) {
    process.stderr.write(`alertmanager-config: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
