/**
 * The provider credential the gateway presents to the upstream, in place of the client's.
 *
 * A client authenticates to the gateway with its tenant key (or a JWT); that credential must
 * never travel on to the LLM provider. tenant-auth removes every client credential header
 * from the upstream request and, when configured, sets the provider's key instead: one per
 * service (the plugin instance), per plan, or per tenant (bring-your-own-key tenants).
 *
 * Keys never sit in kong.yml: the config names where to read them, `env:NAME` (the plugin
 * server's environment; nginx passes a variable only when an `env` directive names it, see
 * docker/kong-pluginservers.sh) or `file:/absolute/path` (e.g. a mounted secret). They are read
 * when the instance starts; a missing one makes the instance refuse requests with
 * `plugin_misconfigured` rather than send the upstream an unauthenticated request.
 */
import { readFileSync } from 'node:fs';
import type { TenantContext } from '../../lib/tenant/context';
import type { TenantAuthConfig } from './config';

/** The `upstream_auth` record as readConfig returns it (config.ts, read off the schema). */
export type UpstreamAuthConfig = TenantAuthConfig['upstream_auth'];

const SOURCE = /^(env:[A-Za-z_][A-Za-z0-9_]*|file:\/.+)$/;

/** Reads one key source; throws with the source (never the key) in the message. */
export function readKeySource(source: string, env: NodeJS.ProcessEnv = process.env): string {
  if (!SOURCE.test(source)) {
    throw new Error(`upstream_auth: '${source}' is not env:NAME or file:/absolute/path`);
  }
  let key: string | undefined;
  if (source.startsWith('env:')) {
    key = env[source.slice(4)];
  } else {
    try {
      key = readFileSync(source.slice(5), 'utf8');
    } catch (e) {
      throw new Error(
        `upstream_auth: cannot read ${source}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  }
  key = key?.trim();
  if (!key) throw new Error(`upstream_auth: ${source} is empty or unset`);
  if (/[\r\n\0]/.test(key)) throw new Error(`upstream_auth: ${source} holds a control character`);
  return key;
}

/** The resolved keys of one instance: which key a tenant's request carries upstream. */
export class UpstreamCredentials {
  private readonly byTenant = new Map<string, string>();
  private readonly byPlan = new Map<string, string>();
  private readonly fallback: string | null;
  readonly header: string;
  /** Lower-cased client headers removed from every upstream request. */
  readonly stripped: readonly string[];

  constructor(
    private readonly config: UpstreamAuthConfig,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.header = config.header.toLowerCase();
    for (const [t, src] of Object.entries(config.tenants))
      this.byTenant.set(t, readKeySource(src, env));
    for (const [p, src] of Object.entries(config.plans))
      this.byPlan.set(p, readKeySource(src, env));
    this.fallback = config.default_key === null ? null : readKeySource(config.default_key, env);
    this.stripped = [...new Set(config.strip_client_credentials.map((h) => h.toLowerCase()))];
  }

  /** True when the tenant's provider key is its own (`upstream_auth.tenants`), not shared. */
  ownKey(tenant: string): boolean {
    return this.byTenant.has(tenant);
  }

  /** The header value for this tenant's upstream request, or null when none is configured. */
  valueFor(ctx: TenantContext): string | null {
    const key = this.byTenant.get(ctx.tenantId) ?? this.byPlan.get(ctx.plan) ?? this.fallback;
    if (key === null || key === undefined) return null;
    return this.config.scheme ? `${this.config.scheme} ${key}` : key;
  }
}
