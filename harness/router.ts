// Route matching, a reduced form of Kong 3.9's `traditional_compatible` router
// (kong/router/compat.lua + kong/router/atc.lua 3.9.3): a route matches when every field it sets
// matches (methods, hosts, paths); prefix paths are plain string prefixes, `~` paths are regexes
// anchored at the start. Among matches: more fields set wins, then regex_priority, then
// regex paths before prefix paths, then the longest path. Upstream path per
// kong/router/utils.lua (3.9.3) get_upstream_uri_v0.
import type { RouteEntity, ServiceEntity } from './config/entities';

export interface RouteMatch {
  route: RouteEntity;
  service?: ServiceEntity;
  /** The part of the path the route matched (used for strip_path and X-Forwarded-Prefix). */
  prefix: string;
  /** What remains after the match. */
  postfix: string;
}

interface Candidate {
  route: RouteEntity;
  weight: number;
  regex: boolean;
  length: number;
  prefix: string;
}

function matchHost(hosts: string[] | undefined, host: string): boolean {
  if (!hosts?.length) return true;
  return hosts.some((h) =>
    h.startsWith('*.')
      ? host.endsWith(h.slice(1))
      : h.endsWith('.*')
        ? host.startsWith(h.slice(0, -1))
        : h === host,
  );
}

function matchPath(
  paths: string[] | undefined,
  path: string,
): { prefix: string; regex: boolean; length: number } | undefined {
  if (!paths?.length) return { prefix: '/', regex: false, length: 0 };
  let best: { prefix: string; regex: boolean; length: number } | undefined;
  for (const p of paths) {
    if (p.startsWith('~')) {
      const m = new RegExp(`^(?:${p.slice(1)})`).exec(path);
      if (m && (!best || !best.regex || p.length > best.length))
        best = { prefix: m[0], regex: true, length: p.length };
    } else if (path.startsWith(p) && (!best || (!best.regex && p.length > best.length))) {
      best = { prefix: p, regex: false, length: p.length };
    }
  }
  return best;
}

export class Router {
  constructor(
    private readonly routes: RouteEntity[],
    private readonly services: ServiceEntity[],
  ) {}

  match(method: string, host: string, path: string): RouteMatch | undefined {
    const candidates: Candidate[] = [];
    for (const route of this.routes) {
      if (route.methods?.length && !route.methods.includes(method)) continue;
      if (!matchHost(route.hosts, host)) continue;
      const pm = matchPath(route.paths, path);
      if (!pm) continue;
      const weight =
        (route.methods?.length ? 1 : 0) +
        (route.hosts?.length ? 1 : 0) +
        (route.paths?.length ? 1 : 0);
      candidates.push({ route, weight, regex: pm.regex, length: pm.length, prefix: pm.prefix });
    }
    candidates.sort(
      (a, b) =>
        b.weight - a.weight ||
        b.route.regex_priority - a.route.regex_priority ||
        Number(b.regex) - Number(a.regex) ||
        b.length - a.length,
    );
    const best = candidates[0];
    if (!best) return undefined;
    const service = best.route.service
      ? this.services.find((s) => s.id === best.route.service?.id)
      : undefined;
    const prefix = best.route.paths?.length ? best.prefix : '/';
    return {
      route: best.route,
      service,
      prefix,
      postfix: path.slice(prefix === '/' && !best.route.paths?.length ? 0 : prefix.length),
    };
  }
}

/** kong/router/utils.lua (3.9.3) get_upstream_uri_v0 (path_handling v0, the default). */
export function upstreamUriV0(
  route: RouteEntity,
  postfix: string,
  reqUri: string,
  base: string,
): string {
  if (base.endsWith('/')) {
    if (route.strip_path) {
      if (postfix === '') {
        if (base === '/') return '/';
        return reqUri.endsWith('/') ? base : base.slice(0, -1);
      }
      return postfix.startsWith('/') ? base.slice(0, -1) + postfix : base + postfix;
    }
    return base + reqUri.slice(1);
  }
  if (route.strip_path) {
    if (postfix === '') return reqUri.length > 1 && reqUri.endsWith('/') ? `${base}/` : base;
    return postfix.startsWith('/') ? base + postfix : `${base}/${postfix}`;
  }
  return reqUri === '/' ? base : base + reqUri;
}
