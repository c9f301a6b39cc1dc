import test from 'ava';
import {
  createTenantContext,
  decodeTenantContext,
  encodeTenantContext,
  isTenantContextError,
  TENANT_CONTEXT_VERSION,
} from '../../lib/tenant/context';

const policy = {
  toolsAllowed: ['search'],
  preferredModel: 'gpt-4o',
  fallbackModel: 'gpt-4o-mini',
  persona: 'Be brief.',
  knowledgeNamespace: 'acme',
  weight: 2,
};

function ctx() {
  return createTenantContext({
    tenantId: 'acme',
    plan: 'pro',
    source: 'consumer',
    subject: 'c-1',
    policy,
  });
}

test('round-trips through versioned JSON', (t) => {
  const raw = encodeTenantContext(ctx());
  t.is(JSON.parse(raw).v, TENANT_CONTEXT_VERSION);
  t.deepEqual(decodeTenantContext(raw), ctx());
});

test('is frozen', (t) => {
  const c = ctx();
  t.true(Object.isFrozen(c));
  t.true(Object.isFrozen(c.policy));
  t.true(Object.isFrozen(c.policy.toolsAllowed));
});

test('absent context is a "missing" error', (t) => {
  for (const raw of [undefined, null, '']) {
    const e = t.throws(() => decodeTenantContext(raw));
    t.true(isTenantContextError(e));
    t.is((e as { kind?: string }).kind, 'missing');
  }
});

test('another version is refused', (t) => {
  for (const v of [1, TENANT_CONTEXT_VERSION + 1]) {
    const raw = JSON.stringify({ ...JSON.parse(encodeTenantContext(ctx())), v });
    const e = t.throws(() => decodeTenantContext(raw));
    t.is((e as { kind?: string }).kind, 'version');
  }
});

test('a tampered tenant id is re-validated on decode', (t) => {
  const o = JSON.parse(encodeTenantContext(ctx()));
  for (const bad of ['ACME', 'acme}', 'a b', '', 42]) {
    const e = t.throws(() => decodeTenantContext(JSON.stringify({ ...o, tenantId: bad })));
    t.true(isTenantContextError(e), 'a context error, so readers answer tenant_context_invalid');
  }
});

test('malformed JSON and shapes are refused', (t) => {
  t.throws(() => decodeTenantContext('{'));
  t.throws(() => decodeTenantContext('[]'));
  t.throws(() => decodeTenantContext(42));
  const o = JSON.parse(encodeTenantContext(ctx()));
  t.throws(() => decodeTenantContext(JSON.stringify({ ...o, policy: { ...o.policy, weight: 0 } })));
  t.throws(() =>
    decodeTenantContext(JSON.stringify({ ...o, policy: { ...o.policy, toolsAllowed: 'x' } })),
  );
  t.throws(() => decodeTenantContext(JSON.stringify({ ...o, source: 'header' })));
  t.throws(() => decodeTenantContext(JSON.stringify({ ...o, plan: 'Pro Plan' })));
});

test('the knowledge namespace obeys the tenant-id pattern; the subject is bounded', (t) => {
  const o = JSON.parse(encodeTenantContext(ctx()));
  for (const ns of ['Acme', 'a b', 'x"||1', '']) {
    t.throws(() =>
      decodeTenantContext(
        JSON.stringify({ ...o, policy: { ...o.policy, knowledgeNamespace: ns } }),
      ),
    );
  }
  t.throws(() => decodeTenantContext(JSON.stringify({ ...o, subject: 's'.repeat(257) })));
  t.notThrows(() => decodeTenantContext(JSON.stringify({ ...o, subject: 's'.repeat(256) })));
});

function tiered(model: unknown) {
  return createTenantContext({
    tenantId: 'acme',
    plan: 'free',
    source: 'consumer',
    subject: 'c-1',
    policy: { ...policy, models: ['gpt-4o-mini'] },
    model: model as never,
  });
}

test('the model decision and the tier round-trip; none is null', (t) => {
  const c = tiered({ requested: 'GPT-4o', served: 'gpt-4o-mini', decision: 'rewritten' });
  t.deepEqual(decodeTenantContext(encodeTenantContext(c)), c);
  t.deepEqual(c.policy.models, ['gpt-4o-mini']);
  t.true(Object.isFrozen(c.model) && Object.isFrozen(c.policy.models));
  t.is(ctx().model, null);
  t.deepEqual(ctx().policy.models, []);
});

test('a decision that serves a model outside the tier, or is malformed, is refused', (t) => {
  for (const bad of [
    { requested: 'gpt-4o', served: 'gpt-4o', decision: 'as_asked' },
    { requested: 'x', served: '', decision: 'default' },
    { requested: 'x', served: 'gpt-4o-mini', decision: 'maybe' },
    { requested: 1, served: 'gpt-4o-mini', decision: 'alias' },
    { requested: 'x'.repeat(257), served: 'gpt-4o-mini', decision: 'alias' },
    'gpt-4o-mini',
  ]) {
    t.throws(() => tiered(bad), undefined, JSON.stringify(bad));
  }
  const o = JSON.parse(encodeTenantContext(tiered(null)));
  const forged = { ...o, model: { requested: 'a', served: 'gpt-4o', decision: 'alias' } };
  t.throws(() => decodeTenantContext(JSON.stringify(forged)));
  t.throws(() =>
    decodeTenantContext(JSON.stringify({ ...o, policy: { ...o.policy, models: [''] } })),
  );
});
