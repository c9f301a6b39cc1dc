/**
 * The pieces of tenant-auth's schema declared once and used at several levels: a plan's
 * fields, a tenant override's (each replaces the plan's value), the model-tier fields both
 * share, and the API-surface list.
 */
import { field, type KongSchemaFields } from '../../lib/schema/fields';
import { API_NAMES } from '../../lib/http/api-surface';
import { MAX_MODEL_NAME_LENGTH } from '../../lib/tenant/context';
import { guardField } from './guard';

export const planFields = [
  {
    tools_allowed: field.array(
      'Tool (function) names this plan may offer the model. `*` grants every tool; empty grants none.',
      field.string('A tool name, or `*`.'),
      { default: [] },
    ),
  },
  {
    preferred_model: field.string(
      'Model the plan normally runs on: what `default`, a request without a model and (in `rewrite` mode) a model outside the tier are served by. Must be one of `models` when the plan has a tier.',
      { len_max: MAX_MODEL_NAME_LENGTH },
    ),
  },
  {
    fallback_model: field.string(
      'Cheaper model to downgrade to near the budget cap (read by token-meter). Must be one of `models` when the plan has a tier.',
      { len_max: MAX_MODEL_NAME_LENGTH },
    ),
  },
  { persona: field.string('System prompt applied to every chat request of the plan.') },
  {
    weight: field.number('Weight of the plan in weighted fair queuing (tenant-ratelimit).', {
      default: 1,
      gt: 0,
    }),
  },
  ...modelTierFields('plan'),
  {
    capture: field.boolean(
      'Capture the requests of this plan’s tenants for replay (`npm run replay`): the request as sent (no credential header) and its outcome, sealed under the tenant’s key in Redis for token-meter’s `capture.ttl_seconds`. Off by default; needs token-meter on the route and its capture secret.',
      { default: false, required: true },
    ),
  },
  {
    api_surface: apiSurfaceField(
      'Replaces the top-level `api_surface` for this plan’s tenants: the APIs they are served. Null keeps the top-level list.',
    ),
  },
  {
    store: field.string('Replaces the top-level `store` for this plan’s tenants; null keeps it.', {
      one_of: ['auto', 'on', 'off', 'scoped'],
    }),
  },
  {
    guard: guardField(
      'Content guard of the plan’s chat, completions and responses requests: patterns checked on every text the client wrote (all roles, content parts, tools, Responses input), normalised; nothing in a request switches it off. null: none.',
    ),
  },
] as const satisfies KongSchemaFields;

/** A list of named APIs (lib/http/api-surface.ts); the same shape at every level. */
export function apiSurfaceField(
  description: string,
  opts: { default?: string[]; required?: boolean } = {},
) {
  return field.array(description, field.string('A named API.', { one_of: [...API_NAMES] }), opts);
}

/** An alias → model map, the same at every level (top level, plan, tenant). */
export function modelAliasesField<
  const O extends { default?: Record<string, string>; required?: boolean } = object,
>(description: string, opts?: O) {
  const name = { len_min: 1, len_max: MAX_MODEL_NAME_LENGTH };
  return field.map(
    description,
    field.string('An alias (matched like a model name).', name),
    field.string('The model the alias stands for.', name),
    opts,
  );
}

/** The model-tier fields, the same for a plan and for a tenant override (which replaces). */
function modelTierFields<Of extends 'plan' | 'tenant'>(of: Of) {
  const tenant = of === 'tenant';
  /** A plan's default (always set); a tenant's override has none (null inherits). */
  const byDefault = <D>(d: D) =>
    (tenant ? {} : { default: d }) as Of extends 'tenant' ? object : { default: D };
  return [
    {
      models: field.array(
        tenant
          ? 'Replaces the plan’s model tier for this tenant.'
          : 'The model tier: the only models this plan’s requests are served by, in the spelling sent upstream (matched ignoring case, surrounding whitespace and Unicode compatibility forms). Empty: no tier, every model passes unchanged.',
        field.string('A model name.', { len_min: 1, len_max: MAX_MODEL_NAME_LENGTH }),
        byDefault([]),
      ),
    },
    {
      model_aliases: modelAliasesField(
        tenant
          ? 'Aliases of this tenant, layered over the plan’s (same alias: the tenant’s wins).'
          : 'Aliases of this plan, layered over the top-level `model_aliases`: alias → model. An alias to a model outside the tier is treated as that model.',
        byDefault({}),
      ),
    },
    {
      model_policy: field.string(
        tenant
          ? 'Replaces the plan’s `model_policy` for this tenant.'
          : 'What a request for a model outside the tier gets on this plan; null uses the top-level `model_policy`.',
        { one_of: ['rewrite', 'reject'] },
      ),
    },
    {
      embedding_model: field.string(
        tenant
          ? 'Replaces the plan’s embedding model.'
          : 'Model an `/embeddings` request without a model, or (in `rewrite` mode) outside the tier, is served by. Null: such requests are refused. Must be one of `models`.',
        { len_max: MAX_MODEL_NAME_LENGTH },
      ),
    },
  ] as const satisfies KongSchemaFields;
}

export const overrideFields = [
  {
    tools_allowed: field.array(
      'Replaces the plan’s tool grant for this tenant.',
      field.string('A tool name, or `*`.'),
    ),
  },
  {
    preferred_model: field.string('Replaces the plan’s preferred model.', {
      len_max: MAX_MODEL_NAME_LENGTH,
    }),
  },
  {
    fallback_model: field.string('Replaces the plan’s fallback model.', {
      len_max: MAX_MODEL_NAME_LENGTH,
    }),
  },
  { persona: field.string('Replaces the plan’s persona.') },
  {
    knowledge_namespace: field.string(
      'Knowledge namespace used by retrieval; defaults to the tenant id.',
      { match: '^[a-z0-9][a-z0-9_-]*$', len_max: 64 },
    ),
  },
  { weight: field.number('Replaces the plan’s fair-queuing weight.', { gt: 0 }) },
  ...modelTierFields('tenant'),
  {
    capture: field.boolean(
      'Replaces the plan’s `capture` for this tenant: true opts the tenant in, false out; null keeps the plan’s.',
    ),
  },
  {
    api_surface: apiSurfaceField(
      'Replaces the plan’s `api_surface` for this tenant; null keeps the plan’s.',
    ),
  },
  {
    store: field.string(
      'Replaces the top-level `store` for this tenant (over its plan’s); null keeps the plan’s.',
      { one_of: ['auto', 'on', 'off', 'scoped'] },
    ),
  },
  {
    guard: guardField(
      'A content guard for this tenant, applied with its plan’s (both must pass): it adds to the plan’s guard, never loosens it.',
    ),
  },
] as const satisfies KongSchemaFields;
