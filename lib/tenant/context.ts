/**
 * TenantContext: the one contract between the plugins. Built once by `tenant-auth` from a
 * verified credential, carried to every other plugin through `kong.ctx.shared` as versioned
 * JSON (values there must be strings across the plugin-server boundary), read once per plugin
 * per request.
 *
 * The type is branded: the only ways to obtain one are `createTenantContext` (which validates)
 * and `decodeTenantContext` (which validates again, since the JSON crossed a process boundary).
 * Functions that touch tenant data take a TenantContext, so an untenanted call cannot be
 * written without a cast.
 */
import {
  TENANT_ID_PATTERN,
  isInvalidTenantIdError,
  parseTenantId,
  type TenantId,
} from './tenant-id';
import { SHARED_KEYS } from '../request/shared-keys';

export const TENANT_CONTEXT_KEY = SHARED_KEYS.tenantContext.key;
/** 2: the model tier (`policy.models`) and the request's model decision (`model`). */
export const TENANT_CONTEXT_VERSION = 2;

/** Where the identity came from. */
export type IdentitySource = 'consumer' | 'jwt';

export type ToolPolicyMode = 'strip' | 'reject';

/** Per-tenant policy, resolved from plan + overrides at request time. */
export interface TenantPolicy {
  /** Tool (function) names the tenant may offer the model; `['*']` grants all. */
  readonly toolsAllowed: readonly string[];
  readonly preferredModel: string | null;
  readonly fallbackModel: string | null;
  readonly persona: string | null;
  /** Namespace of the tenant's knowledge (retrieval), defaults to the tenant id. */
  readonly knowledgeNamespace: string;
  /** Scheduling weight for fair queuing (plan tier). */
  readonly weight: number;
  /**
   * The model tier: the only models the tenant's requests may be served by, in the spelling
   * sent upstream. Empty: the plan has no tier (any model passes, unchanged).
   */
  readonly models: readonly string[];
}

/** What `tenant-auth` made of the request's `model`. */
export type ModelDecision =
  /** the client named a model of the tier, exactly */
  | 'as_asked'
  /** a case/whitespace/Unicode variant of a tier model, sent in the tier's spelling */
  | 'normalised'
  /** an alias (`default`, or a configured one) resolved to a tier model */
  | 'alias'
  /** the body named no model: the plan's preferred one */
  | 'default'
  /** a model outside the tier, replaced by the plan's preferred one */
  | 'rewritten';

export const MODEL_DECISIONS: readonly ModelDecision[] = [
  'as_asked',
  'normalised',
  'alias',
  'default',
  'rewritten',
];

/** Longest model name carried (the client's string is cut to it; served names are config). */
export const MAX_MODEL_NAME_LENGTH = 256;

/**
 * The model of this request, decided by `tenant-auth` on a plan with a tier: later plugins
 * price (token-meter) and key (tenant-cache) on `served`, which is what the body sent upstream
 * names, and report `requested`.
 */
export interface ModelChoice {
  /** What the client's body named, as sent (cut to 256 characters); '' when it named none. */
  readonly requested: string;
  /** The model the upstream is asked for: always one of `policy.models`. */
  readonly served: string;
  readonly decision: ModelDecision;
}

/** The policy as callers build it: a policy without `models` has no tier. */
export type TenantPolicyInput = Omit<TenantPolicy, 'models'> & {
  readonly models?: readonly string[];
};

export interface TenantContextFields {
  readonly tenantId: TenantId;
  readonly plan: string;
  readonly source: IdentitySource;
  /** The verified subject: Kong consumer id, or the JWT `sub`. */
  readonly subject: string;
  readonly policy: TenantPolicy;
  /**
   * The request's model decision; null when none was made (a plan without a tier, a request
   * without a JSON body, `GET /v1/models`).
   */
  readonly model: ModelChoice | null;
}

declare const tenantContextBrand: unique symbol;
export type TenantContext = TenantContextFields & { readonly [tenantContextBrand]: true };

export class TenantContextError extends Error {
  override readonly name = 'TenantContextError';
  constructor(
    readonly kind: 'missing' | 'malformed' | 'version',
    message: string,
  ) {
    super(message);
  }
}

export function isTenantContextError(e: unknown): e is TenantContextError {
  return e instanceof TenantContextError;
}

const PLAN_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

function assertString(v: unknown, field: string, allowNull = false): string | null {
  if (v === null && allowNull) return null;
  if (typeof v !== 'string') throw new TenantContextError('malformed', `${field}: expected string`);
  return v;
}

/** Retrieval builds filters from the namespace: it obeys the tenant-id pattern too. */
function assertNamespace(v: unknown): string {
  if (typeof v !== 'string' || !TENANT_ID_PATTERN.test(v)) {
    throw new TenantContextError(
      'malformed',
      `policy.knowledgeNamespace: must match ${TENANT_ID_PATTERN.source}`,
    );
  }
  return v;
}

const MAX_SUBJECT_LENGTH = 256;

function validatePolicy(p: unknown): TenantPolicy {
  if (p === null || typeof p !== 'object') {
    throw new TenantContextError('malformed', 'policy: expected object');
  }
  const o = p as Record<string, unknown>;
  const tools = o.toolsAllowed;
  if (!Array.isArray(tools) || !tools.every((t) => typeof t === 'string')) {
    throw new TenantContextError('malformed', 'policy.toolsAllowed: expected string[]');
  }
  const weight = o.weight;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new TenantContextError('malformed', 'policy.weight: expected a positive number');
  }
  const models = o.models ?? [];
  if (!Array.isArray(models) || !models.every(isModelName)) {
    throw new TenantContextError('malformed', 'policy.models: expected model names');
  }
  return Object.freeze({
    toolsAllowed: Object.freeze([...(tools as string[])]),
    preferredModel: assertString(o.preferredModel, 'policy.preferredModel', true),
    fallbackModel: assertString(o.fallbackModel, 'policy.fallbackModel', true),
    persona: assertString(o.persona, 'policy.persona', true),
    knowledgeNamespace: assertNamespace(o.knowledgeNamespace),
    weight,
    models: Object.freeze([...(models as string[])]),
  });
}

function isModelName(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_MODEL_NAME_LENGTH;
}

/** The decision must stay inside the tier: a context that says otherwise is refused. */
function validateModel(m: unknown, policy: TenantPolicy): ModelChoice | null {
  if (m === null || m === undefined) return null;
  if (typeof m !== 'object') throw new TenantContextError('malformed', 'model: expected object');
  const o = m as Record<string, unknown>;
  if (typeof o.requested !== 'string' || o.requested.length > MAX_MODEL_NAME_LENGTH) {
    throw new TenantContextError('malformed', 'model.requested: expected a string');
  }
  if (!isModelName(o.served)) {
    throw new TenantContextError('malformed', 'model.served: expected a model name');
  }
  if (!MODEL_DECISIONS.includes(o.decision as ModelDecision)) {
    throw new TenantContextError('malformed', 'model.decision: unknown decision');
  }
  if (policy.models.length > 0 && !policy.models.includes(o.served)) {
    throw new TenantContextError('malformed', 'model.served: not a model of the tier');
  }
  return Object.freeze({
    requested: o.requested,
    served: o.served,
    decision: o.decision as ModelDecision,
  });
}

/** Builds a validated, frozen TenantContext. Throws TenantContextError or InvalidTenantIdError. */
export function createTenantContext(fields: {
  tenantId: string;
  plan: string;
  source: IdentitySource;
  subject: string;
  policy: TenantPolicyInput;
  model?: ModelChoice | null;
}): TenantContext {
  const tenantId = parseTenantId(fields.tenantId);
  if (!PLAN_PATTERN.test(fields.plan)) {
    throw new TenantContextError('malformed', `plan: must match ${PLAN_PATTERN.source}`);
  }
  if (fields.source !== 'consumer' && fields.source !== 'jwt') {
    throw new TenantContextError('malformed', 'source: expected consumer or jwt');
  }
  if (
    typeof fields.subject !== 'string' ||
    fields.subject.length === 0 ||
    fields.subject.length > MAX_SUBJECT_LENGTH
  ) {
    throw new TenantContextError(
      'malformed',
      `subject: expected 1 to ${MAX_SUBJECT_LENGTH} characters`,
    );
  }
  const policy = validatePolicy(fields.policy);
  return Object.freeze({
    tenantId,
    plan: fields.plan,
    source: fields.source,
    subject: fields.subject,
    policy,
    model: validateModel(fields.model, policy),
  }) as TenantContext;
}

/**
 * Versioned JSON for `kong.ctx.shared` (the carrier). With `requestKey` the carrier also names
 * the request's scope (lib/request/scope.ts), first, so a reader finds it without parsing.
 */
export function encodeTenantContext(ctx: TenantContext, requestKey?: string): string {
  return JSON.stringify(
    requestKey === undefined
      ? { v: TENANT_CONTEXT_VERSION, ...ctx }
      : { request: requestKey, v: TENANT_CONTEXT_VERSION, ...ctx },
  );
}

const CARRIER_KEY = /^\{"request":"([0-9a-f]{32})"/;

/** The request-scope key a carrier names, or null. */
export function carrierRequestKey(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  return CARRIER_KEY.exec(raw)?.[1] ?? null;
}

/** Parses and re-validates the JSON another plugin process wrote. */
export function decodeTenantContext(raw: unknown): TenantContext {
  if (raw === null || raw === undefined || raw === '') {
    throw new TenantContextError('missing', 'no tenant context on this request');
  }
  if (typeof raw !== 'string') {
    throw new TenantContextError('malformed', 'tenant context is not a string');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new TenantContextError('malformed', 'tenant context is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object') {
    throw new TenantContextError('malformed', 'tenant context is not an object');
  }
  const o = parsed as Record<string, unknown>;
  if (o.v !== TENANT_CONTEXT_VERSION) {
    throw new TenantContextError('version', `unsupported tenant context version ${String(o.v)}`);
  }
  try {
    return createTenantContext({
      tenantId: o.tenantId as string,
      plan: o.plan as string,
      source: o.source as IdentitySource,
      subject: o.subject as string,
      policy: o.policy as TenantPolicy,
      model: o.model as ModelChoice | null,
    });
  } catch (e) {
    if (isInvalidTenantIdError(e))
      throw new TenantContextError('malformed', `tenantId: ${e.reason}`);
    throw e;
  }
}
