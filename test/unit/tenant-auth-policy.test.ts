import test from 'ava';
import { resolvePlanName, resolvePolicy, toolAllowed } from '../../plugins/tenant-auth/policy';
import { identityFromConsumer, planFromTags } from '../../plugins/tenant-auth/identity/consumer';
import { checkConfig } from '../../plugins/tenant-auth/ready';
import { isGatewayError } from '../../lib/http/errors';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { tenantAuthConfig } from '../helpers/tenant-auth-config';

const NO_TIER = { models: [], model_aliases: {}, model_policy: null, embedding_model: null };
/** What the schema fills on every plan and override that these tests do not set. */
const UNSET = { capture: null, api_surface: null, guard: null, store: null };

const plans = {
  free: {
    tools_allowed: [],
    preferred_model: 'small',
    fallback_model: null,
    persona: null,
    weight: 1,
    ...NO_TIER,
    ...UNSET,
    capture: false,
  },
  pro: {
    tools_allowed: ['search'],
    preferred_model: 'large',
    fallback_model: 'small',
    persona: 'Pro bot',
    weight: 4,
    ...NO_TIER,
    ...UNSET,
    capture: false,
  },
};

test('the credential plan is used when configured', (t) => {
  t.is(resolvePlanName(tenantAuthConfig({ plans }), 'pro'), 'pro');
});

test('an unknown or missing plan falls back to default_plan only when one is configured', (t) => {
  t.is(resolvePlanName(tenantAuthConfig({ plans, default_plan: 'free' }), 'platinum'), 'free');
  t.is(resolvePlanName(tenantAuthConfig({ plans, default_plan: 'free' }), null), 'free');
  for (const plan of ['platinum', null, '__proto__', 'constructor']) {
    const e = t.throws(() => resolvePlanName(tenantAuthConfig({ plans }), plan));
    t.true(isGatewayError(e) && e.status === 403 && e.code === 'unknown_plan');
  }
});

test('tenant overrides layer over the plan; knowledge namespace defaults to the tenant id', (t) => {
  const cfg = tenantAuthConfig({
    plans,
    tenants: {
      acme: {
        tools_allowed: ['search', 'crm_write'],
        preferred_model: null,
        fallback_model: null,
        persona: 'Acme bot',
        knowledge_namespace: 'acme-kb',
        weight: null,
        models: null,
        model_aliases: null,
        model_policy: null,
        embedding_model: null,
        ...UNSET,
      },
    },
  });
  const acme = resolvePolicy(cfg, parseTenantId('acme'), 'pro');
  t.deepEqual(acme, {
    toolsAllowed: ['search', 'crm_write'],
    preferredModel: 'large',
    fallbackModel: 'small',
    persona: 'Acme bot',
    knowledgeNamespace: 'acme-kb',
    weight: 4,
    models: [],
  });
  const globex = resolvePolicy(cfg, parseTenantId('globex'), 'pro');
  t.deepEqual(globex.toolsAllowed, ['search']);
  t.is(globex.knowledgeNamespace, 'globex');
  t.is(globex.persona, 'Pro bot');
});

test('tool grants', (t) => {
  const p = resolvePolicy(tenantAuthConfig({ plans }), parseTenantId('a'), 'pro');
  t.true(toolAllowed(p, 'search'));
  t.false(toolAllowed(p, 'crm_write'));
  t.true(toolAllowed({ ...p, toolsAllowed: ['*'] }, 'anything'));
});

test('consumer: tenant from custom_id or username, plan from tag', (t) => {
  const consumer = {
    id: 'c1',
    username: 'acme-user',
    custom_id: 'acme',
    tags: ['team:x', 'plan:pro'],
  };
  t.deepEqual(
    identityFromConsumer(consumer, { tenant_id_field: 'custom_id', plan_tag_prefix: 'plan:' }),
    {
      source: 'consumer',
      tenantId: 'acme',
      plan: 'pro',
      subject: 'c1',
    },
  );
  t.is(
    identityFromConsumer(consumer, { tenant_id_field: 'username', plan_tag_prefix: 'plan:' })
      ?.tenantId,
    'acme-user',
  );
  t.is(
    identityFromConsumer(null, { tenant_id_field: 'custom_id', plan_tag_prefix: 'plan:' }),
    null,
  );
  t.is(planFromTags(['plan:'], 'plan:'), null);
  t.is(planFromTags(null, 'plan:'), null);
});

test('consumer without the tenant field is refused 403', (t) => {
  const e = t.throws(() =>
    identityFromConsumer(
      { id: 'c1', username: 'x', custom_id: null },
      { tenant_id_field: 'custom_id', plan_tag_prefix: 'plan:' },
    ),
  );
  t.true(isGatewayError(e) && e.status === 403 && e.code === 'consumer_not_a_tenant');
});

test('cross-field config rules', (t) => {
  t.throws(() => checkConfig(tenantAuthConfig({ plans, default_plan: 'gold' })), {
    message: /default_plan 'gold'/,
  });
  const jwt = { ...tenantAuthConfig().jwt, algorithms: ['HS256' as const] };
  t.throws(() => checkConfig(tenantAuthConfig({ identity_sources: ['jwt'], jwt })), {
    message: /hs256_secrets/,
  });
  t.throws(() => checkConfig(tenantAuthConfig({ identity_sources: ['jwt'] })), {
    message: /public_keys or jwks_file/,
  });
  t.notThrows(() => checkConfig(tenantAuthConfig({ plans, default_plan: 'free' })));
});
