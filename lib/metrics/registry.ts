/**
 * One Prometheus registry per plugin-server process, served on each plugin's configurable port
 * so a monitoring stack scrapes each plugin. A process may serve one plugin or the whole chain
 * (co-hosted, the default: harness/pluginserver/layout.ts); either way a plugin's port serves
 * that plugin's own metrics (named `<plugin>_…`) and the process's (`process_…`, `nodejs_…`,
 * `kta_…`), never another plugin's, so a sum over the scrape jobs counts each series once.
 *
 * Tenant label values are bounded: the first `maxTenants` distinct tenants keep their own
 * label value, later ones fold into `__other__`, so a tenant explosion cannot blow up the
 * scrape or the TSDB.
 */
import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { TenantId } from '../tenant/tenant-id';

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export const OTHER_TENANTS_LABEL = '__other__';

/** Bounded mapping tenant -> metric label value. */
export class TenantLabels {
  private readonly seen = new Set<string>();
  constructor(readonly maxTenants: number) {
    if (!Number.isInteger(maxTenants) || maxTenants < 1) {
      throw new RangeError(`maxTenants must be a positive integer, got ${maxTenants}`);
    }
  }
  label(tenant: TenantId): string {
    if (this.seen.has(tenant)) return tenant;
    if (this.seen.size < this.maxTenants) {
      this.seen.add(tenant);
      return tenant;
    }
    return OTHER_TENANTS_LABEL;
  }
}

/** The name prefix of each plugin's metrics: its name with `_` for `-`, then `_`. */
export function pluginMetricPrefix(plugin: string): string {
  return `${plugin.replace(/-/g, '_')}_`;
}

/** The process's own families: served on every port of the process. */
const PROCESS_METRICS = /^(process_|nodejs_|kta_)/;

/**
 * The exposition text for `owner`'s port: its own metrics and the process's, not those of
 * other plugins that share the process. Without an owner, everything.
 */
export async function metricsText(owner?: string): Promise<string> {
  if (owner === undefined) return registry.metrics();
  const mine = pluginMetricPrefix(owner);
  const texts: string[] = [];
  for (const metric of registry.getMetricsAsArray()) {
    const name = metric.name;
    if (!name.startsWith(mine) && !PROCESS_METRICS.test(name)) continue;
    texts.push(await registry.getSingleMetricAsString(name));
  }
  return texts.length ? `${texts.join('\n\n')}\n` : '';
}

const servers = new Map<string, http.Server>();

/**
 * Starts (once per host:port per process) an HTTP server answering `GET /metrics`.
 * Port 0 in config means "do not serve". Errors (port in use) are reported, never thrown
 * into a request.
 */
export function serveMetrics(
  owner: string,
  port: number,
  host = '127.0.0.1',
  onError: (e: Error) => void = () => undefined,
): void {
  if (port === 0) return;
  const key = `${host}:${port}`;
  if (servers.has(key)) return;
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metricsText(owner).then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e.message)),
    );
  });
  server.on('error', (e) => {
    servers.delete(key);
    onError(e);
  });
  server.unref();
  server.listen(port, host);
  servers.set(key, server);
}
