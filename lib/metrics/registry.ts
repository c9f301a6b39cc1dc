/**
 * One Prometheus registry per plugin-server process (each plugin is its own Node process in
 * Kong 3.9), served on a configurable port so a monitoring stack can scrape each plugin.
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

const servers = new Map<string, http.Server>();

/**
 * Starts (once per host:port per process) an HTTP server answering `GET /metrics`.
 * Port 0 in config means "do not serve". Errors (port in use) are reported, never thrown
 * into a request.
 */
export function serveMetrics(
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
    registry.metrics().then(
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
