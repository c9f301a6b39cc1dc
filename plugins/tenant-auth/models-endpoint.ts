import { GatewayError } from '../../lib/http/errors';
import type { KongPdk } from '../../lib/pdk/kong';
import type { RequestScope } from '../../lib/request/scope';
import type { TenantContext } from '../../lib/tenant/context';
import * as metrics from './metrics';
import { modelsAnswer, type ModelTier, type ModelsRequest } from './models';

/**
 * `GET /v1/models[/{id}]` answered from the tenant's tier, never forwarded: the upstream
 * lists every model it serves, the tenant may use only its tier's. Other methods on these
 * paths (e.g. `DELETE` of a fine-tuned model shared by every tenant) are refused.
 */
export async function answerModels(
  kong: KongPdk,
  scope: RequestScope,
  ctx: TenantContext,
  tier: ModelTier,
  req: ModelsRequest,
  tenantLabel: string,
  publish: () => Promise<void>,
): Promise<void> {
  const method = (await scope.method(kong)).toUpperCase();
  // Later plugins' log phases still run after an exit in access: they find the tenant.
  await publish();
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
