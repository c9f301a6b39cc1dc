/**
 * tenant-auth: establishes the tenant at the edge from a verified credential and publishes
 * the TenantContext — to later plugins (kong.ctx.shared), to the upstream (gateway-owned
 * headers, client copies removed) and to Kong's log serializer. Applies the tenant's policy
 * to chat requests (tool grants, persona). Fails closed: no verified tenant, no proxying.
 *
 * PDK round trips on the access path (each is one IPC exchange with Kong):
 *   request.getHeaders, client.getConsumer (consumer source), service.request.setHeaders,
 *   ctx.shared.set, log.setSerializeValue                      = 5
 *   + request.getRawBody when the body must be read            = 6
 *   + service.request.setRawBody when the policy rewrote it    = 7
 */
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics, type TenantLabels } from '../../lib/metrics/registry';
import { guardPhase } from '../../lib/plugin/phase';
import {
  bodyToBuffer,
  firstHeader,
  normaliseHeaderMap,
  type HeaderMap,
  type HeaderValue,
  type KongPdk,
} from '../../lib/pdk/kong';
import {
  TENANT_CONTEXT_KEY,
  createTenantContext,
  encodeTenantContext,
  type TenantContext,
} from '../../lib/tenant/context';
import {
  TENANT_ID_HEADER,
  TENANT_PLAN_HEADER,
  isGatewayOwnedHeader,
} from '../../lib/tenant/headers';
import { isInvalidTenantIdError, parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import { applyPersona, applyToolPolicy, parseJsonObject, precheckBody } from './body';
import { identityFromConsumer } from './identity/consumer';
import { JwtVerifier } from './identity/jwt';
import type { VerifiedIdentity } from './identity/types';
import * as metrics from './metrics';
import { resolvePlanName, resolvePolicy } from './policy';
import { Schema, checkConfig, type TenantAuthConfig } from './schema';

export const Name = 'tenant-auth';
export const Version = '0.1.0';
/** After Kong's auth plugins (key-auth 1250, jwt 1450), before every other plugin of ours. */
export const Priority = 1100;
export { Schema };

const NO_CREDENTIAL = new GatewayError({
  status: 401,
  type: 'authentication_error',
  code: 'missing_credential',
  message: 'no credential: authenticate with your API key or a bearer token',
  headers: { 'WWW-Authenticate': 'Bearer' },
});

export class Plugin {
  private readonly config: TenantAuthConfig;
  private readonly jwt: JwtVerifier | null;
  private readonly extraStrip: ReadonlySet<string>;

  constructor(config: TenantAuthConfig) {
    checkConfig(config);
    this.config = config;
    this.jwt = config.identity_sources.includes('jwt') ? new JwtVerifier(config.jwt) : null;
    this.extraStrip = new Set(config.strip_headers.map((h) => h.toLowerCase()));
    serveMetrics(config.metrics_port);
  }

  async access(kong: unknown): Promise<void> {
    const labels = metrics.tenantLabels(this.config.metrics_max_tenants);
    await guardPhase(kong, Name, 'access', (k) => this.authenticate(k, labels), {
      onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
    });
  }

  private async authenticate(kong: KongPdk, labels: TenantLabels): Promise<void> {
    const headers = normaliseHeaderMap(await kong.request.getHeaders(1000));
    const identity = await this.identify(kong, headers);
    const ctx = this.buildContext(identity);
    const tenantLabel = labels.label(ctx.tenantId);

    const newBody = await this.rewriteBody(kong, headers, ctx, tenantLabel);

    const upstream = this.upstreamHeaders(headers, ctx);
    if (upstream.spoofed) metrics.spoofedHeaders.inc({ tenant: tenantLabel });
    await kong.service.request.setHeaders(upstream.headers);
    if (newBody !== null) await kong.service.request.setRawBody(newBody);
    await kong.ctx.shared.set(TENANT_CONTEXT_KEY, encodeTenantContext(ctx));
    await kong.log.setSerializeValue('tenant', {
      id: ctx.tenantId,
      plan: ctx.plan,
      source: ctx.source,
    });
    metrics.authenticated.inc({ tenant: tenantLabel, plan: ctx.plan, source: ctx.source });
  }

  /** Every configured source that presents a credential must agree on the tenant. */
  private async identify(kong: KongPdk, headers: HeaderMap): Promise<VerifiedIdentity> {
    const found: VerifiedIdentity[] = [];
    for (const source of this.config.identity_sources) {
      if (source === 'consumer') {
        const id = identityFromConsumer(await kong.client.getConsumer(), this.config.consumer);
        if (id) found.push(id);
      } else if (this.jwt) {
        const raw = firstHeader(headers, this.config.jwt.header_name);
        const token = JwtVerifier.tokenFrom(raw);
        if (
          raw !== undefined &&
          token === null &&
          !this.config.identity_sources.includes('consumer')
        ) {
          throw new GatewayError({
            status: 401,
            type: 'authentication_error',
            code: 'invalid_token',
            message: `the ${this.config.jwt.header_name} header must be 'Bearer <token>'`,
            headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' },
          });
        }
        if (token !== null) found.push(await this.jwt.verify(token));
      }
    }
    const first = found[0];
    if (!first) throw NO_CREDENTIAL;
    if (found.some((f) => f.tenantId !== first.tenantId)) {
      throw new GatewayError({
        status: 403,
        type: 'permission_error',
        code: 'conflicting_credentials',
        message: 'the credentials presented name different tenants',
      });
    }
    return first;
  }

  private buildContext(identity: VerifiedIdentity): TenantContext {
    let tenantId: TenantId;
    try {
      // The one place a tenant id is validated; every later use relies on the brand.
      tenantId = parseTenantId(identity.tenantId);
    } catch (e) {
      if (!isInvalidTenantIdError(e)) throw e;
      throw new GatewayError({
        status: 403,
        type: 'permission_error',
        code: 'invalid_tenant_id',
        message: `the credential's tenant id is not valid (${e.reason})`,
      });
    }
    const plan = resolvePlanName(this.config, identity.plan);
    return createTenantContext({
      tenantId,
      plan,
      source: identity.source,
      subject: identity.subject,
      policy: resolvePolicy(this.config, tenantId, plan),
    });
  }

  /** Reads the body when it must be checked or rewritten; returns the new body, or null. */
  private async rewriteBody(
    kong: KongPdk,
    headers: HeaderMap,
    ctx: TenantContext,
    tenantLabel: string,
  ): Promise<string | null> {
    if (!precheckBody(headers, this.config.max_body_bytes)) return null;
    const policyNeedsBody = !ctx.policy.toolsAllowed.includes('*') || ctx.policy.persona !== null;
    if (!policyNeedsBody && !this.config.validate_json_body) return null;

    const body = parseJsonObject(
      bodyToBuffer(await kong.request.getRawBody()),
      this.config.max_body_bytes,
    );
    const stripped = applyToolPolicy(body, ctx.policy, this.config.tool_policy);
    if (stripped.length > 0) metrics.toolsStripped.inc({ tenant: tenantLabel }, stripped.length);
    const persona = applyPersona(body, ctx.policy.persona, this.config.persona_mode);
    if (persona) metrics.personaApplied.inc({ tenant: tenantLabel });
    return stripped.length > 0 || persona ? JSON.stringify(body) : null;
  }

  /** Our headers, plus an empty value for every client-sent gateway-owned header (removes it). */
  private upstreamHeaders(
    headers: HeaderMap,
    ctx: TenantContext,
  ): { headers: Record<string, HeaderValue>; spoofed: boolean } {
    const out: Record<string, HeaderValue> = {};
    let spoofed = false;
    for (const name of Object.keys(headers)) {
      if (isGatewayOwnedHeader(name, this.extraStrip)) {
        out[name] = [];
        spoofed = true;
      }
    }
    out[TENANT_ID_HEADER] = ctx.tenantId;
    out[TENANT_PLAN_HEADER] = ctx.plan;
    return { headers: out, spoofed };
  }
}
