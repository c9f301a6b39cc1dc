/**
 * Capture's Prometheus metrics, on the plugin server's per-process registry. Named after the
 * plugin whose phase counts them (lib/metrics/registry.ts serves a plugin's own prefix on its
 * port): tenant-auth drafts the request, token-meter seals and stores it.
 */
import { Counter } from 'prom-client';
import { registry } from '../metrics/registry';

export const drafts = new Counter({
  name: 'tenant_auth_capture_drafts_total',
  help: 'Requests of opted-in tenants drafted for capture in access, by tenant and result (drafted, failed).',
  labelNames: ['tenant', 'result'] as const,
  registers: [registry],
});

export const captures = new Counter({
  name: 'token_meter_captures_total',
  help: 'Captures of opted-in tenants, by tenant and result: stored, failed (Redis or a read in log), no_secret (capture.secret unset), body_omitted (stored without a body over capture.max_body_bytes).',
  labelNames: ['tenant', 'result'] as const,
  registers: [registry],
});
