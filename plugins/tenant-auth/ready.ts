/**
 * tenant-auth's start-up: the config read and checked once, and everything a request needs
 * built from it (the JWT verifier, the model tiers, the API surface gate, the content guards,
 * the provider keys and what the provider may keep). A config that passes Kong's schema but
 * not the plugin's own checks is kept by the plugin kit as the reason: the instance refuses
 * every request with `plugin_misconfigured` rather than fail to start (Kong 3.9 answers a
 * failed StartInstance with a bare 500 and retries it on every request).
 */
import { startUpOf, type StartUp } from '../../lib/plugin/define';
import { readConfig } from '../../lib/schema/config';
import { ContentGuards } from './guard';
import { JwtVerifier } from './identity/jwt';
import { ModelTiers } from './policy';
import { ProviderState } from './provider-state';
import { ScopedObjects } from './objects';
import { ObjectRegistry } from '../../lib/provider-objects/registry';
import { createRedis } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import type { TenantAuthConfig } from './config';
import { checkModelTiers } from './models';
import { Schema } from './schema';
import { ApiSurfaceGate } from './surface';
import { UpstreamCredentials } from './upstream-auth';

export class Ready {
  readonly config: TenantAuthConfig;
  readonly jwt: JwtVerifier | null;
  readonly extraStrip: ReadonlySet<string>;
  readonly upstream: UpstreamCredentials;
  readonly tiers: ModelTiers;
  /** What each plan is served (api_surface): the gate before anything else. */
  readonly surface: ApiSurfaceGate;
  /** Methods whose requests must carry a JSON body (upper case). */
  readonly bodyMethods: ReadonlySet<string>;
  /** Each plan's and tenant's content guard (guard.ts). */
  readonly guards: ContentGuards;
  /** Whether the provider may keep a tenant's objects (provider-state.ts). */
  readonly state: ProviderState;
  /** Who owns each stored object, where a tenant may be `scoped` (objects.ts); else null. */
  readonly objects: ScopedObjects | null;
  /** Throws when the config passes Kong's schema but not the plugin's own checks. */
  constructor(raw: unknown) {
    this.config = readConfig(Schema, raw);
    checkConfig(this.config);
    this.tiers = new ModelTiers(this.config);
    this.surface = new ApiSurfaceGate(this.config);
    this.bodyMethods = new Set(this.config.require_body_methods.map((m) => m.toUpperCase()));
    this.guards = new ContentGuards(this.config);
    this.jwt = this.config.identity_sources.includes('jwt')
      ? new JwtVerifier(this.config.jwt)
      : null;
    this.extraStrip = new Set(
      this.config.strip_headers.map((h) => h.toLowerCase().replace(/_/g, '-')),
    );
    const upstream = new UpstreamCredentials(this.config.upstream_auth);
    this.upstream = upstream;
    this.state = new ProviderState(
      {
        store: this.config.store ?? 'auto',
        plans: this.config.plans,
        tenants: this.config.tenants,
      },
      (t) => upstream.ownKey(t),
    );
    const so = this.config.stored_objects;
    this.objects = this.state.anyScoped
      ? new ScopedObjects(
          new ObjectRegistry(
            createRedis({ url: so.redis.url, commandTimeoutMs: so.redis.timeout_ms }),
            createKeyspace(so.redis.key_namespace),
            so.ttl_seconds * 1000,
          ),
        )
      : null;
  }
}

export function startUp(raw: unknown): StartUp<Ready> {
  return startUpOf(() => new Ready(raw));
}

/** Cross-field rules, with the bad value in the message. Throws on the first violation. */
export function checkConfig(c: TenantAuthConfig): void {
  if (c.identity_sources.includes('jwt')) {
    const j = c.jwt;
    const usesHs = j.algorithms.includes('HS256');
    const usesAsym = j.algorithms.includes('RS256') || j.algorithms.includes('ES256');
    if (usesHs && j.hs256_secrets.length === 0 && !j.jwks_file) {
      throw new Error('jwt.algorithms includes HS256 but jwt.hs256_secrets is empty');
    }
    if (usesAsym && j.public_keys.length === 0 && !j.jwks_file && !usesHs) {
      throw new Error('jwt needs public_keys or jwks_file for RS256/ES256');
    }
  }
  if (c.default_plan !== null && !Object.prototype.hasOwnProperty.call(c.plans, c.default_plan)) {
    throw new Error(`default_plan '${c.default_plan}' is not one of plans`);
  }
  checkModelTiers(c);
  const base = c.api_base_path;
  if (
    base !== '' &&
    (!base.startsWith('/') || base.endsWith('/') || /\/\.{0,2}(\/|$)/.test(base))
  ) {
    throw new Error(
      `api_base_path '${base}' must be empty or start with '/', with no trailing '/', '//' or dot segment`,
    );
  }
}
