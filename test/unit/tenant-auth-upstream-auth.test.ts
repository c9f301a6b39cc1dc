import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createTenantContext } from '../../lib/tenant/context';
import { UpstreamCredentials, readKeySource } from '../../plugins/tenant-auth/upstream-auth';

const policy = {
  toolsAllowed: [],
  preferredModel: null,
  fallbackModel: null,
  persona: null,
  knowledgeNamespace: 'acme',
  weight: 1,
};
const ctx = (tenantId: string, plan: string) =>
  createTenantContext({
    tenantId,
    plan,
    source: 'consumer',
    subject: 's',
    policy: { ...policy, knowledgeNamespace: tenantId },
  });

test('key sources: env and file, trimmed; bad sources and empty keys refused without echoing a key', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
  writeFileSync(path.join(dir, 'k'), '  sk-file\n');
  t.is(readKeySource('env:PROVIDER_KEY', { PROVIDER_KEY: 'sk-env' }), 'sk-env');
  t.is(readKeySource(`file:${path.join(dir, 'k')}`), 'sk-file');
  t.throws(() => readKeySource('sk-literal-key'), { message: /not env:NAME or file/ });
  t.throws(() => readKeySource('env:UNSET_X', {}), { message: /empty or unset/ });
  t.throws(() => readKeySource('file:/nonexistent'), {
    message: /cannot read file:\/nonexistent: ENOENT/,
  });
  t.throws(() => readKeySource('env:K', { K: 'a\r\nX-Evil: 1' }), { message: /control character/ });
});

test('the tenant key wins over the plan key, which wins over the default', (t) => {
  const env = { T: 'sk-tenant', P: 'sk-plan', D: 'sk-default' };
  const c = new UpstreamCredentials(
    {
      header: 'Authorization',
      scheme: 'Bearer',
      default_key: 'env:D',
      plans: { pro: 'env:P' },
      tenants: { acme: 'env:T' },
      strip_client_credentials: ['Authorization', 'APIKEY'],
    },
    env,
  );
  t.is(c.valueFor(ctx('acme', 'pro')), 'Bearer sk-tenant');
  t.is(c.valueFor(ctx('initech', 'pro')), 'Bearer sk-plan');
  t.is(c.valueFor(ctx('globex', 'free')), 'Bearer sk-default');
  t.deepEqual(c.stripped, ['authorization', 'apikey']);
  const none = new UpstreamCredentials(
    {
      header: 'api-key',
      scheme: '',
      default_key: null,
      plans: {},
      tenants: { acme: 'env:T' },
      strip_client_credentials: [],
    },
    env,
  );
  t.is(none.valueFor(ctx('globex', 'free')), null);
  t.is(none.valueFor(ctx('acme', 'free')), 'sk-tenant');
});
