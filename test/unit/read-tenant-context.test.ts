import test from 'ava';
import { isGatewayError } from '../../lib/http/errors';
import type { KongPdk } from '../../lib/pdk/kong';
import {
  createTenantContext,
  encodeTenantContext,
  TENANT_CONTEXT_KEY,
} from '../../lib/tenant/context';
import { readTenantContext } from '../../lib/tenant/read';

/** A PDK double that serves ctx.shared from a map and records log lines (unit test only). */
function fakeKong(shared: Record<string, unknown>): { kong: KongPdk; logged: string[] } {
  const logged: string[] = [];
  const kong = {
    ctx: { shared: { get: async (k: string) => shared[k], set: async () => null } },
    log: { err: async (...a: unknown[]) => logged.push(a.join(' ')) },
  } as unknown as KongPdk;
  return { kong, logged };
}

const ctx = createTenantContext({
  tenantId: 'acme',
  plan: 'pro',
  source: 'consumer',
  subject: 'c1',
  policy: {
    toolsAllowed: [],
    preferredModel: null,
    fallbackModel: null,
    persona: null,
    knowledgeNamespace: 'acme',
    weight: 1,
  },
});

test('returns the context tenant-auth published', async (t) => {
  const { kong } = fakeKong({ [TENANT_CONTEXT_KEY]: encodeTenantContext(ctx) });
  t.deepEqual(await readTenantContext(kong, 'token-meter'), ctx);
});

test('absent context: 500 tenant_context_missing, logged, fail closed', async (t) => {
  const { kong, logged } = fakeKong({});
  const e = await t.throwsAsync(() => readTenantContext(kong, 'token-meter'));
  t.true(isGatewayError(e) && e.status === 500 && e.code === 'tenant_context_missing');
  t.regex(logged.join('\n'), /token-meter: refusing request without a valid tenant context/);
});

test('tampered context: 500 tenant_context_invalid', async (t) => {
  const bad = JSON.stringify({ ...JSON.parse(encodeTenantContext(ctx)), tenantId: 'ACME' });
  const { kong } = fakeKong({ [TENANT_CONTEXT_KEY]: bad });
  const e = await t.throwsAsync(() => readTenantContext(kong, 'token-meter'));
  t.true(isGatewayError(e) && e.code === 'tenant_context_invalid');
});
