/**
 * tenant-auth: establishes the tenant at the edge from a verified credential and publishes
 * the TenantContext — to later plugins (kong.ctx.shared), to the upstream (gateway-owned
 * headers, client copies removed) and to Kong's log serializer. Applies the tenant's policy
 * to chat requests (model tier, tool grants, persona) and answers `GET /v1/models` from the
 * tier. Fails closed: no verified tenant, no proxying.
 *
 * PDK calls on the access path (each one IPC round trip with Kong):
 *   request.getHeaders, client.getConsumer (consumer source), service.request.setHeaders,
 *   ctx.shared.set, log.setSerializeValue                          = 5
 *   + request.getRawBody when the plan polices the body, or a declared body is validated = 6
 *   (a request declaring no body: + request.getMethod, and the read when its method needs one)
 *   + service.request.setRawBody when the checked body differs from the client's bytes   = 7
 * On a plan with a model tier: + request.getPath, and the body is always read (the model
 * decision itself costs no call)                                                = 7 / 8
 *   + response.setHeaders (X-Model-Requested/-Served) when the served model is not the
 *     string the client sent                                                           = 9
 *   GET /v1/models[/{id}]: getHeaders, getConsumer, getPath, getMethod, ctx.shared.set,
 *   log.setSerializeValue, response.exit                                               = 7
 * Every request, for the API surface (surface.ts): + request.getMethod, nginx.getVar
 * ("upstream_uri"), request.getPathWithQuery (reads the PDK batch fetches with the first);
 * a GET/HEAD/DELETE + service.request.setRawBody("") and no body read; a dropped query
 * argument + service.request.clearQueryArg.
 */
import { draftCapture } from '../../lib/capture/draft'; // capture (issue 23)
import { GatewayError } from '../../lib/http/errors';
import { serveMetrics, type TenantLabels } from '../../lib/metrics/registry';
import { guardPhase } from '../../lib/plugin/phase';
import { openScope, type RequestScope } from '../../lib/request/scope';
import { readConfig } from '../../lib/schema/config';
import {
  bodyToBuffer,
  firstHeader,
  headerLineCount,
  normaliseHeaderMap,
  type HeaderMap,
  type KongPdk,
} from '../../lib/pdk/kong';
import {
  TENANT_CONTEXT_KEY,
  createTenantContext,
  encodeTenantContext,
  type ModelChoice,
  type TenantContext,
} from '../../lib/tenant/context';
import { TENANT_ID_HEADER, TENANT_PLAN_HEADER, modelHeaders } from '../../lib/tenant/headers';
import { isInvalidTenantIdError, parseTenantId, type TenantId } from '../../lib/tenant/tenant-id';
import {
  applyPersona,
  applyToolPolicy,
  assertJsonContentType,
  bodyTooLarge,
  emptyBody,
  parseJsonObject,
  precheckBody,
} from './body';
import { identityFromConsumer } from './identity/consumer';
import { JwtVerifier } from './identity/jwt';
import type { VerifiedIdentity } from './identity/types';
import * as metrics from './metrics';
import {
  assertGenerationModel,
  decideModel,
  endpointKind,
  modelsAnswer,
  modelsRequest,
  type ModelTier,
  type ModelsRequest,
} from './models';
import { ModelTiers, resolvePlanName, resolvePolicy } from './policy';
import { identityHeaderRemovals, spoofVerdict } from './spoof';
import { Schema, checkConfig, type TenantAuthConfig } from './schema';
import { ContentGuards, guardRefusal } from './guard';
import {
  ProviderState,
  STATEFUL_APIS,
  STORING_APIS,
  statefulRefusal,
  unstore,
} from './provider-state';
import { ApiSurfaceGate, GENERATION_APIS, type SurfaceDecision } from './surface';
import { UpstreamCredentials } from './upstream-auth';

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

/** The most header lines kong.request.get_headers can return (kong/pdk/request.lua). */
const MAX_HEADERS = 1000;

const TOO_MANY_HEADERS = new GatewayError({
  status: 431,
  type: 'invalid_request_error',
  code: 'too_many_headers',
  message: `requests with ${MAX_HEADERS} or more header lines are refused`,
});

const MISCONFIGURED = new GatewayError({
  status: 500,
  type: 'server_error',
  code: 'plugin_misconfigured',
  message: 'tenant-auth is misconfigured on this route; the request was not forwarded',
});

export class Plugin {
  private readonly config: TenantAuthConfig;
  private readonly jwt: JwtVerifier | null = null;
  private readonly extraStrip: ReadonlySet<string> = new Set();
  private readonly upstream: UpstreamCredentials | null = null;
  private readonly tiers: ModelTiers;
  /** What each plan is served (api_surface): the gate before anything else. */
  private readonly surface: ApiSurfaceGate;
  /** Methods whose requests must carry a JSON body (upper case). */
  private readonly bodyMethods: ReadonlySet<string>;
  /** Each plan's and tenant's content guard (guard.ts); none until the config is checked. */
  private readonly guards: ContentGuards = new ContentGuards({ plans: {}, tenants: {} });
  /** Whether the provider may keep a tenant's objects (provider-state.ts). */
  private readonly state: ProviderState;
  /** Why this instance cannot serve, when its config is unusable. */
  private readonly misconfigured: string | null = null;

  /**
   * Never throws. Kong 3.9 answers a failed StartInstance with a bare 500 and retries it on
   * every request (kong/runloop/plugin_servers/plugin.lua get_instance_id); an instance that
   * starts and refuses each request with `plugin_misconfigured` says why, in the API's format.
   */
  constructor(raw: unknown) {
    this.config = readConfig<TenantAuthConfig>(Schema, raw);
    this.tiers = new ModelTiers(this.config);
    this.surface = new ApiSurfaceGate(this.config);
    this.bodyMethods = new Set(this.config.require_body_methods.map((m) => m.toUpperCase()));
    this.state = new ProviderState(
      {
        store: this.config.store ?? 'auto',
        plans: this.config.plans,
        tenants: this.config.tenants,
      },
      (t) => this.upstream?.ownKey(t) ?? false,
    );
    try {
      checkConfig(this.config);
      this.guards = new ContentGuards(this.config);
      this.jwt = this.config.identity_sources.includes('jwt')
        ? new JwtVerifier(this.config.jwt)
        : null;
      this.extraStrip = new Set(
        this.config.strip_headers.map((h) => h.toLowerCase().replace(/_/g, '-')),
      );
      this.upstream = new UpstreamCredentials(this.config.upstream_auth);
      serveMetrics('tenant-auth', this.config.metrics_port, this.config.metrics_host, (e) => {
        process.stderr.write(
          `tenant-auth: metrics endpoint ${this.config.metrics_host}:${this.config.metrics_port} failed: ${e.message}\n`,
        );
      });
    } catch (e) {
      this.misconfigured = e instanceof Error ? e.message : String(e);
    }
  }

  async access(kong: unknown): Promise<void> {
    await guardPhase(
      kong,
      Name,
      'access',
      (k) => {
        if (this.misconfigured !== null) {
          void k.log.err(`tenant-auth is misconfigured, refusing: ${this.misconfigured}`);
          throw MISCONFIGURED;
        }
        return this.authenticate(k, metrics.tenantLabels(this.config.metrics_max_tenants));
      },
      { onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }) },
    );
  }

  private async authenticate(kong: KongPdk, labels: TenantLabels): Promise<void> {
    // The request's scope: what later plugins would read again from Kong, kept for them.
    const scope = openScope();
    const headers = normaliseHeaderMap(await kong.request.getHeaders(MAX_HEADERS));
    // Kong returns at most MAX_HEADERS lines and drops the rest silently: a header hidden
    // past them would escape spoof stripping and the body checks, so refuse the request.
    if (headerLineCount(headers) >= MAX_HEADERS) throw TOO_MANY_HEADERS;
    // Before anything else: decide the fate of client-sent gateway-owned headers.
    const spoof = spoofVerdict(headers, this.extraStrip);
    const identity = await this.identify(kong, headers);
    const { ctx: tenant, tier } = this.buildContext(identity);
    const tenantLabel = labels.label(tenant.tenantId);
    // The API surface, decided on the path Kong will send upstream: nothing the plan does not
    // serve goes further (plugins/tenant-auth/surface.ts).
    const surface = await this.surface.decide(kong, scope, tenant.plan, tenant.tenantId);
    // Objects the provider keeps under a key other tenants share: none for this tenant.
    if (STATEFUL_APIS.has(surface.api) && !this.state.storeOn(tenant.plan, tenant.tenantId))
      throw statefulRefusal(surface.api, tenant.plan);

    // Only a tiered plan needs the path: for /v1/models and to tell /embeddings apart.
    const path = tier === null ? '' : await scope.path(kong);
    if (tier !== null && this.config.models_endpoint) {
      const models = modelsRequest(path);
      if (models !== null) return this.answerModels(kong, scope, tenant, tier, models, tenantLabel);
    }

    const { body: newBody, model } = surface.bodyless
      ? { body: null, model: null }
      : await this.rewriteBody(kong, scope, headers, tenant, tier, path, surface, tenantLabel);
    const ctx = model === null ? tenant : withModel(tenant, model);
    if (model !== null)
      metrics.modelDecisions.inc({ tenant: tenantLabel, decision: model.decision });

    if (spoof.spoofed) metrics.spoofedHeaders.inc({ tenant: tenantLabel });
    // One call removes the client copies and credentials, and sets ours.
    const writes = {
      ...spoof.removals,
      ...identityHeaderRemovals(headers, identity.source === 'consumer'),
      ...this.credentialHeaders(headers, ctx),
      [TENANT_ID_HEADER]: ctx.tenantId,
      [TENANT_PLAN_HEADER]: ctx.plan,
    };
    await kong.service.request.setHeaders(writes);
    scope.rememberHeaders(headers);
    scope.applyHeaderWrites(writes);
    // capture (issue 23): the request as sent, for an opted-in tenant (lib/capture/draft.ts)
    await draftCapture(kong, scope, headers, ctx, this.config, tenantLabel);
    if (newBody !== null) await scope.setBody(kong, newBody);
    // A GET, HEAD or DELETE carries no body upstream, whatever the client sent with it; the
    // chain after us then reads none (nothing to rewrite, inject or meter).
    else if (surface.bodyless) await scope.setBody(kong, '');
    // Query parameters that must not go upstream. clear_query_arg, not set_raw_query: on Kong
    // 3.9.3 set_raw_query (ngx.req.set_uri_args) called from a plugin server leaves the query
    // as it was; clear_query_arg (ngx.var.args) takes, as it does for key-auth.
    for (const name of surface.dropQueryArgs) await kong.service.request.clearQueryArg(name);
    await this.publish(kong, scope, ctx);
    // Set in access, these reach the client with the upstream's answer (and with any later
    // plugin's exit); token-meter sets the same two on every metered request.
    if (model !== null && model.served !== model.requested) {
      await kong.response.setHeaders(modelHeaders(model.requested, model.served));
    }
    metrics.authenticated.inc({ tenant: tenantLabel, plan: ctx.plan, source: ctx.source });
  }

  /** The TenantContext (naming the request's scope) to later plugins and to Kong's log serializer. */
  private async publish(kong: KongPdk, scope: RequestScope, ctx: TenantContext): Promise<void> {
    const carrier = encodeTenantContext(ctx, scope.key);
    scope.bindCarrier(carrier, ctx);
    await kong.ctx.shared.set(TENANT_CONTEXT_KEY, carrier);
    await kong.log.setSerializeValue('tenant', {
      id: ctx.tenantId,
      plan: ctx.plan,
      source: ctx.source,
      ...(ctx.model === null ? {} : { model: ctx.model }),
    });
  }

  /**
   * `GET /v1/models[/{id}]` answered from the tenant's tier, never forwarded: the upstream
   * lists every model it serves, the tenant may use only its tier's. Other methods on these
   * paths (e.g. `DELETE` of a fine-tuned model shared by every tenant) are refused.
   */
  private async answerModels(
    kong: KongPdk,
    scope: RequestScope,
    ctx: TenantContext,
    tier: ModelTier,
    req: ModelsRequest,
    tenantLabel: string,
  ): Promise<void> {
    const method = (await scope.method(kong)).toUpperCase();
    // Later plugins' log phases still run after an exit in access: they find the tenant.
    await this.publish(kong, scope, ctx);
    metrics.authenticated.inc({ tenant: tenantLabel, plan: ctx.plan, source: ctx.source });
    if (method !== 'GET' && method !== 'HEAD') {
      throw new GatewayError({
        status: 405,
        type: 'invalid_request_error',
        code: 'method_not_allowed',
        message: `${method} is not allowed on the models endpoint of this gateway`,
        headers: { Allow: 'GET, HEAD' },
      });
    }
    const answer = modelsAnswer(req, tier);
    metrics.modelListings.inc({
      tenant: tenantLabel,
      kind: req.kind,
      status: String(answer.status),
    });
    void kong.response.exit(answer.status, JSON.stringify(answer.body), {
      'Content-Type': 'application/json',
      'Cache-Control': 'private, no-store',
    });
  }

  /**
   * The client's credentials never travel upstream: every credential header it sent is
   * removed, and the provider key for this tenant (if configured) takes the upstream header.
   */
  private credentialHeaders(
    headers: HeaderMap,
    ctx: TenantContext,
  ): Record<string, string[] | string> {
    const out: Record<string, string[] | string> = {};
    const up = this.upstream;
    if (!up) return out;
    for (const name of up.stripped) if (name in headers) out[name] = [];
    const value = up.valueFor(ctx);
    if (value !== null) out[up.header] = value;
    return out;
  }

  /** Every configured source that presents a credential must agree on the tenant. */
  private async identify(kong: KongPdk, headers: HeaderMap): Promise<VerifiedIdentity> {
    const found: VerifiedIdentity[] = [];
    for (const source of this.config.identity_sources) {
      if (source === 'consumer') {
        const anonymous = firstHeader(headers, 'x-anonymous-consumer') === 'true';
        const consumer = await kong.client.getConsumer();
        const id = identityFromConsumer(consumer, this.config.consumer, anonymous);
        if (id) found.push(id);
      } else if (this.jwt) {
        // Another scheme in the header is fine when a consumer may stand in (basic-auth, …).
        const otherSchemes = this.config.identity_sources.includes('consumer');
        const token = this.jwt.tokenFromHeaders(headers, otherSchemes);
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

  private buildContext(identity: VerifiedIdentity): { ctx: TenantContext; tier: ModelTier | null } {
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
    const tier = this.tiers.tierFor(plan, tenantId);
    const policy = resolvePolicy(this.config, tenantId, plan);
    const ctx = createTenantContext({
      tenantId,
      plan,
      source: identity.source,
      subject: identity.subject,
      // On a tiered plan, later plugins see the tier's models in the spelling sent upstream.
      policy:
        tier === null
          ? policy
          : {
              ...policy,
              preferredModel: tier.preferred,
              fallbackModel: tier.fallback,
              models: tier.models,
            },
      model: null,
    });
    return { ctx, tier };
  }

  /**
   * Reads the body when it must be checked or policed; returns the body to forward (null:
   * the client's bytes unchanged) and, on a tiered plan, the model decision.
   */
  private async rewriteBody(
    kong: KongPdk,
    scope: RequestScope,
    headers: HeaderMap,
    ctx: TenantContext,
    tier: ModelTier | null,
    path: string,
    surface: SurfaceDecision,
    tenantLabel: string,
  ): Promise<{ body: string | null; model: ModelChoice | null }> {
    const unchanged = { body: null, model: null };
    const max = this.config.max_body_bytes;
    const declared = precheckBody(headers, max);
    const guarded = GENERATION_APIS.has(surface.api) && this.guards.applies(ctx.plan, ctx.tenantId);
    const unstored = STORING_APIS.has(surface.api) && !this.state.storeOn(ctx.plan, ctx.tenantId);
    const policyNeedsBody =
      tier !== null ||
      !ctx.policy.toolsAllowed.includes('*') ||
      ctx.policy.persona !== null ||
      guarded ||
      unstored;
    const validate = this.config.validate_json_body;
    if (!policyNeedsBody && !validate) return unchanged;
    // Where a policy applies the body is read whatever the headers declare: an HTTP/2 request
    // can carry one with neither Content-Length nor Transfer-Encoding. So is a request whose
    // method needs a body and declares none, to refuse it rather than forward it empty.
    // (The method costs a PDK call: asked only of requests that declare no body.)
    const mustCarryBody = async () =>
      validate &&
      this.bodyMethods.size > 0 &&
      this.bodyMethods.has((await scope.method(kong)).toUpperCase());
    let needsBody = false;
    if (!declared.present && !policyNeedsBody) {
      needsBody = await mustCarryBody();
      if (!needsBody) return unchanged;
    }

    // A length-checked body is read up to the limit (with max_allowed_file_size Kong also
    // reads a body nginx buffered to a file, over client_body_buffer_size). A chunked one is
    // read whole and measured here: get_raw_body(max) would answer nil for one over the limit,
    // which the plugin server cannot return (a 500); nginx's client_max_body_size bounds it.
    const raw = await kong.request.getRawBody(declared.lengthKnown ? max : 0);
    if (raw === null || raw === undefined) throw bodyTooLarge(max);
    const bytes = bodyToBuffer(raw);
    if (bytes.length > max) throw bodyTooLarge(max);
    scope.rememberBody(bytes);
    if (bytes.length === 0) {
      if (declared.present || needsBody || (!declared.present && (await mustCarryBody()))) {
        throw emptyBody();
      }
      return unchanged;
    }
    if (!declared.present) assertJsonContentType(headers);
    const body = parseJsonObject(bytes, max);
    const generation = GENERATION_APIS.has(surface.api);
    if (!policyNeedsBody) {
      if (generation) assertGenerationModel(body.model, null);
      return unchanged;
    }

    // The tier first: a refused model costs nothing more.
    const model = tier === null ? null : decideModel(body, tier, endpointKind(path), ctx.plan);
    if (generation) assertGenerationModel(model?.served ?? body.model, tier);
    // The content guard reads what the client wrote, before the tool policy and the persona
    // change it: nothing of the operator's is judged, nothing of the client's escapes.
    if (guarded) {
      const verdict = this.guards.check(ctx.plan, ctx.tenantId, body);
      if (verdict !== 'pass') {
        metrics.guardRefusals.inc({ tenant: tenantLabel, verdict });
        throw guardRefusal(verdict);
      }
    }
    if (unstored) unstore(body, surface.api);
    const stripped = applyToolPolicy(body, ctx.policy, this.config.tool_policy);
    if (stripped.length > 0) metrics.toolsStripped.inc({ tenant: tenantLabel }, stripped.length);
    if (applyPersona(body, ctx.policy.persona, this.config.persona_mode)) {
      metrics.personaApplied.inc({ tenant: tenantLabel });
    }
    // Forward what was checked, never different bytes: with duplicate keys, JSON can mean one
    // thing here (the last key wins) and another upstream (some parsers keep the first).
    const checked = JSON.stringify(body);
    return { body: checked === bytes.toString('utf8') ? null : checked, model };
  }
}

/** The context with the request's model decision (re-validated: served must be in the tier). */
function withModel(ctx: TenantContext, model: ModelChoice): TenantContext {
  return createTenantContext({ ...ctx, model });
}
