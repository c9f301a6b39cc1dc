/**
 * Where a tenant's request goes: the plan's or the tenant's own upstream (a dedicated
 * deployment, another provider) or the service's own target, and where it falls back to while
 * that upstream's breaker is open. Decided from the TenantContext only — never from anything
 * the client sent.
 */
import { createHash } from 'node:crypto';
import type { KongService } from '../../lib/pdk/kong';
import type { TenantContext } from '../../lib/tenant/context';
import type { BreakerScope, CircuitBreakerConfig, RouteConfig } from './schema';

export interface Target {
  /** The configured upstream name, or `service:<name>` for the service's own target. */
  label: string;
  host: string;
  port: number;
  path: string | null;
  model: string | null;
  scope: BreakerScope;
  /** True for a configured upstream (reached with kong.service.set_target). */
  direct: boolean;
}

export interface TenantRoute {
  /** The configured primary upstream, or null: the service's own target. */
  primary: Target | null;
  fallback: Target | null;
  fallbackModel: string | null;
  maxInFlight: number;
}

function pick<K extends keyof RouteConfig>(
  tenant: RouteConfig | undefined,
  plan: RouteConfig | undefined,
  key: K,
): RouteConfig[K] | null {
  return tenant?.[key] ?? plan?.[key] ?? null;
}

function own<T>(map: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined;
}

function configured(config: CircuitBreakerConfig, name: string | null): Target | null {
  if (name === null) return null;
  const u = own(config.upstreams, name);
  if (!u) return null; // checkConfig refuses such configs
  return {
    label: name,
    host: u.host,
    port: u.port,
    path: u.path,
    model: u.model,
    scope: u.breaker_scope,
    direct: true,
  };
}

export function resolveRoute(config: CircuitBreakerConfig, ctx: TenantContext): TenantRoute {
  const t = own(config.tenants, ctx.tenantId);
  const p = own(config.plans, ctx.plan);
  return {
    primary: configured(config, pick(t, p, 'upstream')),
    fallback: configured(config, pick(t, p, 'fallback_upstream')),
    fallbackModel: pick(t, p, 'fallback_model'),
    maxInFlight: pick(t, p, 'max_in_flight') ?? config.bulkhead.max_in_flight,
  };
}

/** The service's own target (kong.router.get_service), as a Target. */
export function serviceTarget(svc: KongService, scope: BreakerScope): Target {
  return {
    label: `service:${svc.name ?? svc.id ?? svc.host}`,
    host: svc.host,
    port: svc.port,
    path: null,
    model: null,
    scope,
    direct: false,
  };
}

/** Breakers with the same settings share state per key; different settings never do. */
export function settingsFingerprint(config: CircuitBreakerConfig): string {
  return createHash('sha256').update(JSON.stringify(config.breaker)).digest('hex').slice(0, 12);
}

/**
 * The breaker a request to `target` uses: one per upstream target (`host:port`), or one per
 * tenant on it. A tenant id cannot contain `@` or `|` (parseTenantId), so keys cannot collide.
 */
export function breakerKey(fingerprint: string, target: Target, ctx: TenantContext): string {
  const where = `${target.host}:${target.port}`;
  return target.scope === 'tenant'
    ? `${fingerprint}|${ctx.tenantId}@${where}`
    : `${fingerprint}|${where}`;
}
