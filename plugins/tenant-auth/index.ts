/**
 * tenant-auth: establishes the tenant at the edge from a verified credential and publishes
 * the TenantContext — to later plugins (kong.ctx.shared), to the upstream (gateway-owned
 * headers, client copies removed) and to Kong's log serializer. Applies the tenant's policy
 * to chat requests (model tier, tool grants, persona) and answers `GET /v1/models` from the
 * tier. Fails closed: no verified tenant, no proxying.
 *
 * Its PDK calls per request are stated once, in the README ("Cost on the request path"), and
 * held there by test/harness/tenant-auth-pdk-calls.test.ts. The pieces: ready.ts (start-up),
 * identity/resolve.ts (who is asking), surface.ts (what is served), request-body.ts (the body's
 * policies), models-endpoint.ts (GET /v1/models), provider-state.ts and guard.ts.
 */
import { draftCapture } from '../../lib/capture/draft'; // capture (issue 23)
import { GatewayError } from '../../lib/http/errors';
import { type TenantLabels } from '../../lib/metrics/registry';
import { definePlugin } from '../../lib/plugin/define';
import { openScope, type RequestScope } from '../../lib/request/scope';
import {
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
import { buildContext, identify } from './identity/resolve';
import * as metrics from './metrics';
import { answerModels } from './models-endpoint';
import { modelsRequest } from './models';
import { OBJECTS_KEY, SCOPED_APIS } from './objects';
import { STATEFUL_APIS, statefulRefusal, unscopedRefusal } from './provider-state';
import { runChainLog } from '../../lib/request/chain-log';
import { startUp, type Ready } from './ready';
import { policeBody } from './request-body';
import { Schema } from './schema';
import { identityHeaderRemovals, spoofVerdict } from './spoof';

export const Name = 'tenant-auth';
export const Version = '0.1.0';
/** After Kong's auth plugins (key-auth 1250, jwt 1450), before every other plugin of ours. */
export const Priority = 1100;
export { Schema };

/** The most header lines kong.request.get_headers can return (kong/pdk/request.lua). */
const MAX_HEADERS = 1000;

const TOO_MANY_HEADERS = new GatewayError({
  status: 431,
  type: 'invalid_request_error',
  code: 'too_many_headers',
  message: `requests with ${MAX_HEADERS} or more header lines are refused`,
});

export const { Plugin } = definePlugin<Ready>({
  name: Name,
  version: Version,
  priority: Priority,
  schema: Schema,
  startUp,
  metricsAt: (r) => ({ port: r.config.metrics_port, host: r.config.metrics_host }),
  access: (ready, kong) =>
    authenticate(ready, kong, metrics.tenantLabels(ready.config.metrics_max_tenants)),
  // What access left for after the response (the record of a stored object, objects.ts). In
  // the co-hosted chain this is the chain's one log phase (lib/pluginserver/chain-entry.ts).
  log: (_ready, kong) => runChainLog(kong),
  onRefusal: (e) => metrics.refusals.inc({ reason: e.code, status: String(e.status) }),
});

async function authenticate(ready: Ready, kong: KongPdk, labels: TenantLabels): Promise<void> {
  // The request's scope: what later plugins would read again from Kong, kept for them.
  const scope = openScope();
  const headers = normaliseHeaderMap(await kong.request.getHeaders(MAX_HEADERS));
  // Kong returns at most MAX_HEADERS lines and drops the rest silently: a header hidden
  // past them would escape spoof stripping and the body checks, so refuse the request.
  if (headerLineCount(headers) >= MAX_HEADERS) throw TOO_MANY_HEADERS;
  // Before anything else: decide the fate of client-sent gateway-owned headers.
  const spoof = spoofVerdict(headers, ready.extraStrip);
  const identity = await identify(kong, headers, ready);
  const { ctx: tenant, tier } = buildContext(identity, ready);
  const tenantLabel = labels.label(tenant.tenantId);
  // The API surface, decided on the path Kong will send upstream: nothing the plan does not
  // serve goes further (plugins/tenant-auth/surface.ts).
  const surface = await ready.surface.decide(kong, scope, tenant.plan, tenant.tenantId);
  // Objects the provider keeps under a key other tenants share: none for this tenant, or
  // (`store: scoped`) only its own, recorded by the gateway (objects.ts).
  const objects = ready.state.scoped(tenant.plan, tenant.tenantId) ? ready.objects : null;
  if (STATEFUL_APIS.has(surface.api) && !ready.state.storeOn(tenant.plan, tenant.tenantId)) {
    if (objects === null) throw statefulRefusal(surface.api, tenant.plan);
    if (!SCOPED_APIS.has(surface.api)) throw unscopedRefusal(surface.api, tenant.plan);
    const list = await objects.onRequest(kong, scope, tenant, surface, tenantLabel);
    if (list !== null) {
      // Later plugins' log phases still run after an exit in access: they find the tenant.
      await publishContext(kong, scope, tenant);
      metrics.authenticated.inc({ tenant: tenantLabel, plan: tenant.plan, source: tenant.source });
      void kong.response.exit(200, JSON.stringify(list), {
        'Content-Type': 'application/json',
        'Cache-Control': 'private, no-store',
      });
      return;
    }
  }

  // Only a tiered plan needs the path: for /v1/models and to tell /embeddings apart.
  const path = tier === null ? '' : await scope.path(kong);
  if (tier !== null && ready.config.models_endpoint) {
    const models = modelsRequest(path);
    if (models !== null) {
      const publish = () => publishContext(kong, scope, tenant);
      return answerModels(kong, scope, tenant, tier, models, tenantLabel, publish);
    }
  }

  const {
    body: newBody,
    model,
    json: newJson,
  } = surface.bodyless || surface.opaqueBody
    ? { body: null, model: null, json: undefined }
    : await policeBody(
        kong,
        { scope, headers, ctx: tenant, tier, path, surface, tenantLabel, objects },
        ready,
      );
  const ctx = model === null ? tenant : withModel(tenant, model);
  if (model !== null) metrics.modelDecisions.inc({ tenant: tenantLabel, decision: model.decision });

  if (spoof.spoofed) metrics.spoofedHeaders.inc({ tenant: tenantLabel });
  // One call removes the client copies and credentials, and sets ours.
  const writes = {
    ...spoof.removals,
    ...identityHeaderRemovals(headers, identity.source === 'consumer'),
    ...credentialHeaders(ready, headers, ctx),
    [TENANT_ID_HEADER]: ctx.tenantId,
    [TENANT_PLAN_HEADER]: ctx.plan,
    // A stored object's id is read from the answer: asked for uncompressed (objects.ts).
    ...(objects?.capturing(scope) ? { 'accept-encoding': 'identity' } : {}),
  };
  await kong.service.request.setHeaders(writes);
  scope.rememberHeaders(headers);
  scope.applyHeaderWrites(writes);
  // capture (issue 23): the request as sent, for an opted-in tenant (lib/capture/draft.ts)
  await draftCapture(kong, scope, headers, ctx, ready.config, tenantLabel);
  if (newBody !== null) await scope.setBody(kong, newBody, newJson);
  // A GET, HEAD or DELETE carries no body upstream, whatever the client sent with it; the
  // chain after us then reads none (nothing to rewrite, inject or meter).
  else if (surface.bodyless) await scope.setBody(kong, '');
  // Query parameters that must not go upstream. clear_query_arg, not set_raw_query: on Kong
  // 3.9.3 set_raw_query (ngx.req.set_uri_args) called from a plugin server leaves the query
  // as it was; clear_query_arg (ngx.var.args) takes, as it does for key-auth.
  for (const name of surface.dropQueryArgs) await kong.service.request.clearQueryArg(name);
  // kong.yml's post-function keeps the answer that makes a stored object (objects.ts).
  if (objects?.capturing(scope)) await kong.ctx.shared.set(OBJECTS_KEY, '1');
  await publishContext(kong, scope, ctx);
  // Set in access, these reach the client with the upstream's answer (and with any later
  // plugin's exit); token-meter sets the same two on every metered request.
  if (model !== null && model.served !== model.requested) {
    await kong.response.setHeaders(modelHeaders(model.requested, model.served));
  }
  metrics.authenticated.inc({ tenant: tenantLabel, plan: ctx.plan, source: ctx.source });
}

/** The TenantContext (naming the request's scope) to later plugins and to Kong's log serializer. */
async function publishContext(
  kong: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
): Promise<void> {
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
 * The client's credentials never travel upstream: every credential header it sent is
 * removed, and the provider key for this tenant (if configured) takes the upstream header.
 */
function credentialHeaders(
  ready: Ready,
  headers: HeaderMap,
  ctx: TenantContext,
): Record<string, string[] | string> {
  const out: Record<string, string[] | string> = {};
  const up = ready.upstream;
  if (!up) return out;
  for (const name of up.stripped) if (name in headers) out[name] = [];
  const value = up.valueFor(ctx);
  if (value !== null) out[up.header] = value;
  return out;
}

/** The context with the request's model decision (re-validated: served must be in the tier). */
function withModel(ctx: TenantContext, model: ModelChoice): TenantContext {
  return createTenantContext({ ...ctx, model });
}
