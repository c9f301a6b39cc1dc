/**
 * Per-tenant policy over one codebase: the plan from the credential selects a plan policy,
 * per-tenant overrides are layered over it, all resolved at request time from config and
 * carried in the TenantContext. An unknown plan is never guessed: it is the configured
 * `default_plan` or a 403.
 */
import { GatewayError } from '../../lib/http/errors';
import type { TenantPolicy } from '../../lib/tenant/context';
import type { TenantId } from '../../lib/tenant/tenant-id';
import { buildModelTier, type ModelTier } from './models';
import type { TenantAuthConfig } from './config';

export function resolvePlanName(cfg: TenantAuthConfig, credentialPlan: string | null): string {
  if (credentialPlan !== null && Object.prototype.hasOwnProperty.call(cfg.plans, credentialPlan)) {
    return credentialPlan;
  }
  if (cfg.default_plan !== null) return cfg.default_plan;
  throw new GatewayError({
    status: 403,
    type: 'permission_error',
    code: 'unknown_plan',
    message:
      credentialPlan === null
        ? 'the credential names no plan and no default_plan is configured'
        : 'the plan named by the credential is not configured on this gateway',
  });
}

export function resolvePolicy(
  cfg: TenantAuthConfig,
  tenantId: TenantId,
  planName: string,
): TenantPolicy {
  const plan = cfg.plans[planName];
  if (!plan) throw new Error(`plan '${planName}' vanished from config`);
  const o = Object.prototype.hasOwnProperty.call(cfg.tenants, tenantId)
    ? cfg.tenants[tenantId]
    : undefined;
  return {
    toolsAllowed: o?.tools_allowed ?? plan.tools_allowed ?? [],
    preferredModel: o?.preferred_model ?? plan.preferred_model ?? null,
    fallbackModel: o?.fallback_model ?? plan.fallback_model ?? null,
    persona: o?.persona ?? plan.persona ?? null,
    knowledgeNamespace: o?.knowledge_namespace ?? tenantId,
    weight: o?.weight ?? plan.weight ?? 1,
    models: o?.models ?? plan.models,
  };
}

/** True when the tenant may offer `tool` to the model. */
export function toolAllowed(policy: TenantPolicy, tool: string): boolean {
  return policy.toolsAllowed.includes('*') || policy.toolsAllowed.includes(tool);
}

/**
 * Every tenant's tier, built once per (plan, tenant override): a plan's tier serves every
 * tenant without an override. Bounded by plans × overridden tenants of the config.
 */
export class ModelTiers {
  private readonly built = new Map<string, ModelTier | null>();
  constructor(private readonly cfg: TenantAuthConfig) {}

  tierFor(plan: string, tenantId: TenantId): ModelTier | null {
    const overridden = Object.prototype.hasOwnProperty.call(this.cfg.tenants, tenantId);
    const key = overridden ? `${plan}\u0000${tenantId}` : plan;
    let tier = this.built.get(key);
    if (tier === undefined) {
      tier = buildModelTier(this.cfg, plan, overridden ? tenantId : '');
      this.built.set(key, tier);
    }
    return tier;
  }
}
