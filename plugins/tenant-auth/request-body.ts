/**
 * The request body, where a policy needs it or validation is on: read once (bounded), parsed
 * strictly, then policed in order — the model tier, the generation-model check, the content
 * guard, what the provider may store, the tool grants, the persona — and forwarded as the
 * checked JSON only when it changed.
 */
import type { RequestScope } from '../../lib/request/scope';
import { bodyToBuffer, type HeaderMap, type KongPdk } from '../../lib/pdk/kong';
import type { ModelChoice, TenantContext } from '../../lib/tenant/context';
import {
  assertJsonContentType,
  bodyTooLarge,
  emptyBody,
  parseJsonObject,
  type JsonObject,
  precheckBody,
} from './body';
import { applyPersona, applyToolPolicy } from './rewrite';
import { guardRefusal } from './guard';
import * as metrics from './metrics';
import { assertGenerationModel, decideModel, endpointKind, type ModelTier } from './models';
import type { ScopedObjects } from './objects';
import { STORING_APIS, unstore } from './provider-state';
import type { Ready } from './ready';
import { GENERATION_APIS, type SurfaceDecision } from './surface';

/**
 * Stateful APIs whose JSON bodies may name a stored object (a batch's file, a store's files, a
 * conversation item's `input_file`).
 */
const BODY_REFERENCES: ReadonlySet<string> = new Set([
  'batches',
  'uploads',
  'vector_stores',
  'conversations',
]);

/** One request's facts the body policy reads. */
export interface BodyRequest {
  readonly scope: RequestScope;
  readonly headers: HeaderMap;
  readonly ctx: TenantContext;
  readonly tier: ModelTier | null;
  /** The request path (only read on a tiered plan; '' otherwise). */
  readonly path: string;
  readonly surface: SurfaceDecision;
  readonly tenantLabel: string;
  /** The tenant's stored objects, where its `store` is `scoped` (objects.ts); else null. */
  readonly objects: ScopedObjects | null;
}

/**
 * Reads the body when it must be checked or policed; returns the body to forward (null:
 * the client's bytes unchanged) and, on a tiered plan, the model decision.
 */
export async function policeBody(
  kong: KongPdk,
  req: BodyRequest,
  ready: Ready,
): Promise<{ body: string | null; model: ModelChoice | null; json?: JsonObject }> {
  const { scope, headers, ctx, tier, path, surface, tenantLabel, objects } = req;
  const unchanged = { body: null, model: null };
  const max = ready.config.max_body_bytes;
  const declared = precheckBody(headers, max);
  const guarded = GENERATION_APIS.has(surface.api) && ready.guards.applies(ctx.plan, ctx.tenantId);
  const unstored =
    objects === null &&
    STORING_APIS.has(surface.api) &&
    !ready.state.storeOn(ctx.plan, ctx.tenantId);
  // A scoped tenant's generation and batch bodies: their references are checked, what they
  // make is recorded.
  const scoped =
    objects !== null && (GENERATION_APIS.has(surface.api) || BODY_REFERENCES.has(surface.api));
  const policyNeedsBody =
    tier !== null ||
    !ctx.policy.toolsAllowed.includes('*') ||
    ctx.policy.persona !== null ||
    guarded ||
    unstored ||
    scoped;
  const validate = ready.config.validate_json_body;
  if (!policyNeedsBody && !validate) return unchanged;
  // Where a policy applies the body is read whatever the headers declare: an HTTP/2 request
  // can carry one with neither Content-Length nor Transfer-Encoding. So is a request whose
  // method needs a body and declares none, to refuse it rather than forward it empty.
  // (The method costs a PDK call: asked only of requests that declare no body.)
  const mustCarryBody = async () =>
    validate &&
    ready.bodyMethods.size > 0 &&
    ready.bodyMethods.has((await scope.method(kong)).toUpperCase());
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
    // Parsed once for the chain: later plugins read this object (RequestScope.json).
    scope.rememberJson(bytes, body);
    return unchanged;
  }

  // The tier first: a refused model costs nothing more.
  const model = tier === null ? null : decideModel(body, tier, endpointKind(path), ctx.plan);
  if (generation) assertGenerationModel(model?.served ?? body.model, tier);
  // The content guard reads what the client wrote, before the tool policy and the persona
  // change it: nothing of the operator's is judged, nothing of the client's escapes.
  if (guarded) {
    const verdict = ready.guards.check(ctx.plan, ctx.tenantId, body);
    if (verdict !== 'pass') {
      metrics.guardRefusals.inc({ tenant: tenantLabel, verdict });
      throw guardRefusal(verdict);
    }
  }
  if (unstored) unstore(body, surface.api);
  if (scoped) await objects.onBody(scope, ctx, surface.api, body, tenantLabel);
  const stripped = applyToolPolicy(body, ctx.policy, ready.config.tool_policy);
  if (stripped.length > 0) metrics.toolsStripped.inc({ tenant: tenantLabel }, stripped.length);
  if (applyPersona(body, ctx.policy.persona, ready.config.persona_mode)) {
    metrics.personaApplied.inc({ tenant: tenantLabel });
  }
  // Forward what was checked, never different bytes: with duplicate keys, JSON can mean one
  // thing here (the last key wins) and another upstream (some parsers keep the first).
  const checked = JSON.stringify(body);
  if (checked === bytes.toString('utf8')) {
    scope.rememberJson(bytes, body);
    return { body: null, model };
  }
  // The object `checked` was made from is what later plugins read (RequestScope.setBody).
  return { body: checked, model, json: body };
}
