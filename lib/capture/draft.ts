/**
 * tenant-auth's half of a capture (issue 23): for a tenant whose plan or override opted in,
 * the request as the tenant sent it — headers (no credential of any spelling) and body, taken
 * before any rewrite — is left for token-meter's log phase, which adds the outcome, seals the
 * record under the tenant's key and stores it off the request path (recorder.ts).
 *
 * Cost on the request path, opted-in tenants only: one PDK call (`ctx.shared.set` of the
 * capture flag, which also tells the answer snippet in body_filter to keep the answer), plus
 * the body read when nothing read it yet (a plan without body policy and validate_json_body
 * off). Tenants that did not opt in: no call at all, nothing kept.
 *
 * With the chain co-hosted in one process (the default) the draft stays in the request's
 * scope, held for token-meter's log; with one process per plugin it crosses in the flag.
 */
import type { HeaderMap, KongPdk } from '../pdk/kong';
import { slot, type RequestScope } from '../request/scope';
import { isChainProcess } from '../request/scope-store';
import type { TenantContext } from '../tenant/context';
import type { TenantId } from '../tenant/tenant-id';
import * as metrics from './metrics';
import { capturableHeaders, draftFrom, encodeDraft, type CaptureDraft } from './record';
import { SHARED_KEYS } from '../request/shared-keys';

/**
 * `kong.ctx.shared` key of the capture flag: `1` (the draft is in the scope) or the draft's
 * JSON (one process per plugin). The answer snippet (answer-snippet.lua) keeps the answer of
 * requests that carry it.
 */
export const CAPTURE_FLAG_KEY = SHARED_KEYS.captureFlag.key;
/** `kong.ctx.shared` key the answer snippet writes: `all;<body>` or `cut;<first bytes>`. */
export const CAPTURE_ANSWER_KEY = SHARED_KEYS.captureAnswer.key;
export const CAPTURE_DRAFT_SLOT = slot<CaptureDraft>(CAPTURE_FLAG_KEY);
/** The scope holder that keeps a drafted request's scope until token-meter's log. */
export const CAPTURE_HOLDER = 'capture';

/** The opt-in as tenant-auth's config states it (plans, tenant overrides). */
export interface CaptureOptInConfig {
  plans: Record<string, { capture?: boolean | null }>;
  tenants: Record<string, { capture?: boolean | null }>;
}

/** The tenant's override when it sets one, else its plan's; off unless one says on. */
export function captureEnabled(cfg: CaptureOptInConfig, tenant: TenantId, plan: string): boolean {
  const own = Object.prototype.hasOwnProperty.call(cfg.tenants, tenant)
    ? cfg.tenants[tenant]?.capture
    : undefined;
  if (own === true || own === false) return own;
  const p = Object.prototype.hasOwnProperty.call(cfg.plans, plan) ? cfg.plans[plan] : undefined;
  return p?.capture === true;
}

/** What else tenant-auth's config says is a credential header. */
export interface CaptureDraftConfig extends CaptureOptInConfig {
  upstream_auth: { strip_client_credentials: string[] };
  jwt: { header_name: string };
  max_body_bytes: number;
}

function declaresBody(headers: HeaderMap): boolean {
  const length = headers['content-length']?.[0];
  return (length !== undefined && length !== '0') || headers['transfer-encoding'] !== undefined;
}

/**
 * The hook in tenant-auth's access, after the tenant is known and before the body is
 * rewritten. Never throws: a capture that cannot be drafted is counted, and the request goes on.
 */
export async function draftCapture(
  kong: KongPdk,
  scope: RequestScope,
  headers: HeaderMap,
  ctx: TenantContext,
  cfg: CaptureDraftConfig,
  tenantLabel: string,
): Promise<void> {
  if (!captureEnabled(cfg, ctx.tenantId, ctx.plan)) return;
  try {
    const secret = new Set(
      [...cfg.upstream_auth.strip_client_credentials, cfg.jwt.header_name].map((h) =>
        h.toLowerCase(),
      ),
    );
    // The scope holds the bytes tenant-auth read (as sent: rewrites come after this hook).
    const body =
      scope.bodySize > 0 || declaresBody(headers)
        ? await scope.rawBody(kong, cfg.max_body_bytes)
        : null;
    const draft = draftFrom(capturableHeaders(headers, secret), body);
    if (isChainProcess() && scope.findable) {
      scope.set(CAPTURE_DRAFT_SLOT, draft);
      scope.hold(CAPTURE_HOLDER);
      await kong.ctx.shared.set(CAPTURE_FLAG_KEY, '1');
    } else {
      await kong.ctx.shared.set(CAPTURE_FLAG_KEY, encodeDraft(draft));
    }
    metrics.drafts.inc({ tenant: tenantLabel, result: 'drafted' });
  } catch (e) {
    metrics.drafts.inc({ tenant: tenantLabel, result: 'failed' });
    void kong.log.warn(
      `capture: request not drafted: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}
