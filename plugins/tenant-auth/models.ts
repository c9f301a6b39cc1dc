/**
 * Model tiers: which models a tenant's requests may be served by, and what a request for any
 * other model gets. Pure functions over the config and the parsed body; the plugin does the
 * PDK calls.
 *
 * Robust by construction: whatever the client wrote, the body that goes upstream names a model
 * of the tier in the tier's own spelling (or the request is refused). Matching only decides
 * *which* tier model that is, so a spelling the matcher does not recognise can never reach the
 * upstream as-is (where a lenient upstream might read `GPT-4O` as `gpt-4o`).
 */
import { GatewayError } from '../../lib/http/errors';
import {
  MAX_MODEL_NAME_LENGTH,
  type ModelChoice,
  type ModelDecision,
} from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import type { ModelPolicyMode, TenantAuthConfig } from './config';

/** The alias every tiered plan understands: the plan's preferred model. */
export const DEFAULT_ALIAS = 'default';

/**
 * The form two model names are compared in: Unicode compatibility forms folded (NFKC: a
 * fullwidth `ｇｐｔ` is `gpt`), format and control characters (zero-width joiners, NUL)
 * dropped, surrounding whitespace trimmed, lower case.
 */
export function modelKey(name: string): string {
  return name
    .normalize('NFKC')
    .replace(/[\p{Cf}\p{Cc}]/gu, '')
    .trim()
    .toLowerCase();
}

/** A tenant's resolved tier. */
export interface ModelTier {
  /** The tier's models in config order, as sent upstream. */
  readonly models: readonly string[];
  readonly preferred: string;
  /** The near-cap downgrade model (token-meter), null when none is in the tier. */
  readonly fallback: string | null;
  /** Serves `/embeddings` requests that name no model or (rewrite) one outside the tier. */
  readonly embedding: string | null;
  readonly mode: ModelPolicyMode;
  /** modelKey(alias) → the model it stands for (not necessarily in the tier). */
  readonly aliases: ReadonlyMap<string, string>;
  /** modelKey(model) → the tier's spelling. */
  readonly byKey: ReadonlyMap<string, string>;
}

export type EndpointKind = 'embeddings' | 'generation';

/** `/embeddings` (any prefix) is served by embedding models; everything else by the preferred one. */
export function endpointKind(path: string): EndpointKind {
  return /\/embeddings\/?$/.test(path) ? 'embeddings' : 'generation';
}

function entries(map: Record<string, string> | null | undefined): Array<[string, string]> {
  // Kong may hand an empty map over as an empty array: Object.entries reads both.
  return map ? Object.entries(map) : [];
}

/**
 * The tier of `tenantId` on `planName`: the plan's, with the tenant's overrides (models,
 * policy and embedding model replace; aliases layer). Null when the result has no models.
 * Throws a plain Error (a config fault) when the preferred, fallback or embedding model is
 * outside the tier or two tier entries are the same model.
 */
export function buildModelTier(
  cfg: TenantAuthConfig,
  planName: string,
  tenantId: TenantId | string,
): ModelTier | null {
  const plan = cfg.plans[planName];
  if (!plan) throw new Error(`plan '${planName}' is not configured`);
  const o = Object.prototype.hasOwnProperty.call(cfg.tenants, tenantId)
    ? cfg.tenants[tenantId]
    : undefined;
  const models = o?.models ?? plan.models;
  if (models.length === 0) return null;
  const where = o ? `plan '${planName}' with tenant '${tenantId}'` : `plan '${planName}'`;
  const byKey = new Map<string, string>();
  for (const m of models) {
    const key = modelKey(m);
    if (key === '') throw new Error(`${where}: an empty model name in models`);
    const seen = byKey.get(key);
    if (seen !== undefined) throw new Error(`${where}: '${m}' and '${seen}' are the same model`);
    byKey.set(key, m);
  }
  // A value the config states for this tier must be in it. One a tenant inherits from its plan
  // while replacing the plan's models may fall outside: a fallback or embedding model is then
  // not used (the preferred model is needed, so it must be in the tier all the same).
  const inTier = (
    field: 'preferred_model' | 'fallback_model' | 'embedding_model',
    required: boolean,
  ): string | null => {
    const own = o?.[field] ?? null;
    const name = own ?? plan[field];
    if (name === null) return null;
    const canonical = byKey.get(modelKey(name));
    if (canonical !== undefined) return canonical;
    if (!required && own === null && o?.models) return null;
    throw new Error(`${where}: ${field} '${name}' is not one of models [${models.join(', ')}]`);
  };
  const preferred = inTier('preferred_model', true);
  if (preferred === null) throw new Error(`${where}: a plan with models needs a preferred_model`);
  const fallback = inTier('fallback_model', false);
  const embedding = inTier('embedding_model', false);
  const aliases = new Map<string, string>();
  for (const layer of [cfg.model_aliases, plan.model_aliases, o?.model_aliases]) {
    for (const [alias, target] of entries(layer)) aliases.set(modelKey(alias), target);
  }
  return Object.freeze({
    models: Object.freeze([...models]),
    preferred,
    fallback,
    embedding,
    mode: o?.model_policy ?? plan.model_policy ?? cfg.model_policy,
    aliases,
    byKey,
  });
}

/** Checks every plan's tier and every tenant override against every plan (config faults). */
export function checkModelTiers(cfg: TenantAuthConfig): void {
  for (const plan of Object.keys(cfg.plans)) {
    buildModelTier(cfg, plan, '');
    for (const tenant of Object.keys(cfg.tenants)) buildModelTier(cfg, plan, tenant);
  }
}

/** The tier model `name` stands for (a tier model in any spelling, or an alias of one). */
export function resolveTierModel(
  tier: ModelTier,
  name: string,
  kind: EndpointKind = 'generation',
): { model: string; decision: ModelDecision } | null {
  const key = modelKey(name);
  const aliased = tier.aliases.get(key);
  if (aliased !== undefined) {
    const model = tier.byKey.get(modelKey(aliased));
    return model === undefined ? null : { model, decision: 'alias' };
  }
  if (key === DEFAULT_ALIAS) {
    const target = kind === 'embeddings' ? tier.embedding : tier.preferred;
    return target === null ? null : { model: target, decision: 'alias' };
  }
  const model = tier.byKey.get(key);
  if (model === undefined) return null;
  return { model, decision: model === name ? 'as_asked' : 'normalised' };
}

function shown(name: string): string {
  const cut = name.length > 64 ? `${name.slice(0, 64)}…` : name;
  return JSON.stringify(cut);
}

function badModel(message: string): GatewayError {
  return new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_model',
    message,
    param: 'model',
  });
}

export function modelNotAllowed(name: string, plan: string, tier: ModelTier): GatewayError {
  return new GatewayError({
    status: 403,
    type: 'permission_error',
    code: 'model_not_allowed',
    message: `the model ${shown(name)} is not available on the '${plan}' plan; available: ${tier.models.join(', ')}`,
    param: 'model',
  });
}

/**
 * Text-generating APIs (chat, completions, responses) never run on an embedding model: the
 * upstream would refuse it at best, and token-meter prices an embedding model's completion
 * tokens at nothing. An embedding model is the plan's `embedding_model`, or any model whose
 * name says `embed` (compared as `modelKey`). A model that is not a string is left to the tier
 * and the meter.
 */
export function assertGenerationModel(model: unknown, tier: ModelTier | null): void {
  if (typeof model !== 'string') return;
  const key = modelKey(model);
  const planEmbedding = tier?.embedding ?? null;
  if (!key.includes('embed') && (planEmbedding === null || key !== modelKey(planEmbedding))) return;
  throw new GatewayError({
    status: 400,
    type: 'invalid_request_error',
    code: 'model_not_supported',
    message: `the model ${shown(model)} is an embedding model: it serves the embeddings API only`,
    param: 'model',
  });
}

/**
 * Decides the model of a JSON request body and writes it into the body (`body.model`): the
 * tier's spelling of what the client named, an alias's target, the preferred model when the
 * body names none, or — for a model outside the tier — the preferred model (`rewrite`) or a
 * 403 (`reject`). `/embeddings` requests use the plan's embedding model where the preferred
 * one would be used. Returns the decision; the caller sees whether the body changed by
 * comparing `served` with what the client sent.
 */
export function decideModel(
  body: Record<string, unknown>,
  tier: ModelTier,
  kind: EndpointKind,
  plan: string,
): ModelChoice {
  const raw = body.model;
  const fallbackTarget = kind === 'embeddings' ? tier.embedding : tier.preferred;
  let requested = '';
  let served: string;
  let decision: ModelDecision;
  if (raw === undefined || raw === null) {
    if (fallbackTarget === null) {
      throw badModel(`this request names no model and the '${plan}' plan has no embedding model`);
    }
    served = fallbackTarget;
    decision = 'default';
  } else if (typeof raw !== 'string') {
    throw badModel('`model` must be a string');
  } else {
    requested = raw.slice(0, MAX_MODEL_NAME_LENGTH);
    const found = raw.length > MAX_MODEL_NAME_LENGTH * 4 ? null : resolveTierModel(tier, raw, kind);
    if (found !== null) {
      served = found.model;
      decision = found.decision;
    } else if (tier.mode === 'reject' || fallbackTarget === null) {
      throw modelNotAllowed(raw, plan, tier);
    } else {
      served = fallbackTarget;
      decision = 'rewritten';
    }
  }
  if (body.model !== served) body.model = served;
  return Object.freeze({ requested, served, decision });
}

/**
 * `GET /v1/models` (list) or `GET /v1/models/{id}` (retrieve), under any route prefix, on the
 * path as `kong.request.get_path` gives it (normalised like the path proxied upstream: dot
 * segments resolved, slashes merged, unreserved escapes decoded). `models` in any case: an
 * upstream that matches paths case-insensitively must not list every model.
 */
export type ModelsRequest = { kind: 'list' } | { kind: 'retrieve'; id: string };

export function modelsRequest(path: string): ModelsRequest | null {
  const m = /^(?:.*\/)?models(?:\/(.+?))?\/?$/i.exec(path);
  if (!m) return null;
  const rawId = m[1];
  if (rawId === undefined) return { kind: 'list' };
  let id = rawId;
  try {
    id = decodeURIComponent(rawId);
  } catch {
    // a malformed escape is matched as written, and matches no model
  }
  return { kind: 'retrieve', id };
}

interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

function modelObject(id: string): ModelObject {
  // The gateway does not know when a model was created: 0 keeps the answer stable.
  return { id, object: 'model', created: 0, owned_by: 'system' };
}

/** The answer to a models request from the tier: status and OpenAI-shaped JSON. */
export function modelsAnswer(
  req: ModelsRequest,
  tier: ModelTier,
): { status: number; body: object } {
  if (req.kind === 'list')
    return { status: 200, body: { object: 'list', data: tier.models.map(modelObject) } };
  const found = resolveTierModel(tier, req.id);
  if (found !== null) return { status: 200, body: modelObject(found.model) };
  return {
    status: 404,
    body: {
      error: {
        message: `The model ${shown(req.id)} does not exist or you do not have access to it.`,
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    },
  };
}
