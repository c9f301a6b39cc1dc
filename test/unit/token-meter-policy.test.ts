/**
 * token-meter's budget policy (plugins/token-meter/policy.ts): which budget applies to a tenant
 * and which ladder its request climbs, from a config Kong's schema filled in (defaults applied)
 * and a TenantContext. Pure: no Redis, no gateway.
 */
import test from 'ava';
import { GatewayError } from '../../lib/http/errors';
import { readConfig } from '../../lib/schema/config';
import { createTenantContext, type TenantPolicyInput } from '../../lib/tenant/context';
import type { TokenMeterConfig } from '../../plugins/token-meter/config';
import { ladderFor, resolveBudget, type ResolvedBudget } from '../../plugins/token-meter/policy';
import { readMeteredRequest } from '../../plugins/token-meter/request-body';
import { Schema } from '../../plugins/token-meter/schema';

const config = (extra: Record<string, unknown> = {}): TokenMeterConfig =>
  readConfig(Schema, {
    plans: {
      pro: { budget_tokens: 1000, budget_usd: 2.5, soft_threshold: 0.8, default_max_tokens: 64 },
      strict: { budget_tokens: 500, allow_downgrade: false, allow_clamp: false },
    },
    tenants: { vip: { budget_tokens: 9000, soft_threshold: 0.5 } },
    prices: {
      big: { kind: 'generation', prompt_per_million: 10, completion_per_million: 30 },
      small: { kind: 'generation', prompt_per_million: 1, completion_per_million: 3 },
      other: { kind: 'generation', prompt_per_million: 1, completion_per_million: 2 },
      embed: { kind: 'embedding', prompt_per_million: 0.02, completion_per_million: 0 },
    },
    context_headroom_tokens: 7,
    ...extra,
  });

const policy = (p: Partial<TenantPolicyInput> = {}): TenantPolicyInput => ({
  toolsAllowed: ['*'],
  preferredModel: null,
  fallbackModel: 'small',
  persona: null,
  knowledgeNamespace: 'kb',
  weight: 1,
  ...p,
});

const tenant = (tenantId: string, plan: string, p: Partial<TenantPolicyInput> = {}) =>
  createTenantContext({ tenantId, plan, source: 'consumer', subject: tenantId, policy: policy(p) });

const chat = (extra: Record<string, unknown> = {}) =>
  readMeteredRequest(
    Buffer.from(JSON.stringify({ model: 'big', messages: [], ...extra })),
    '/v1/chat/completions',
    { maxTokensCap: 32768, maxChoices: 8 },
  );

test('a plan budget: its caps (USD as integer nano-USD), thresholds and bounds', (t) => {
  t.deepEqual(resolveBudget(config(), tenant('acme', 'pro')), {
    caps: { tokens: 1000, cost: 2_500_000_000 },
    softThreshold: 0.8,
    allowDowngrade: true,
    allowClamp: true,
    minClampTokens: 16,
    defaultMaxTokens: 64,
  });
  // a plan without its own default_max_tokens takes the config's
  t.is(resolveBudget(config(), tenant('acme', 'strict'))?.defaultMaxTokens, 1024);
});

test("a tenant's override replaces the plan's numbers, for that tenant only", (t) => {
  const c = config();
  const vip = resolveBudget(c, tenant('vip', 'pro'));
  t.like(vip, { caps: { tokens: 9000, cost: 2_500_000_000 }, softThreshold: 0.5 });
  // positive control: the same plan without the override
  t.like(resolveBudget(c, tenant('vipx', 'pro')), { caps: { tokens: 1000 }, softThreshold: 0.8 });
});

test('an unlisted plan: refused (null) by default, uncapped with unlisted_plan=meter_only', (t) => {
  t.is(resolveBudget(config(), tenant('acme', 'gold')), null);
  // an inherited property name is no plan
  t.is(resolveBudget(config(), tenant('acme', 'constructor')), null);
  t.deepEqual(resolveBudget(config({ unlisted_plan: 'meter_only' }), tenant('acme', 'gold')), {
    caps: { tokens: null, cost: null },
    softThreshold: 1,
    allowDowngrade: false,
    allowClamp: false,
    minClampTokens: 1,
    defaultMaxTokens: 1024,
  });
});

function ladderOf(
  c: TokenMeterConfig,
  ctx = tenant('acme', 'pro'),
  request = chat({ max_tokens: 100 }),
  model = 'big',
) {
  const budget = resolveBudget(c, ctx) as ResolvedBudget;
  return ladderFor(c, { ctx, budget, request, model, promptTokens: 20 });
}

test('the ladder: the model asked, the fallback, the clamp; the headroom on the prompt', (t) => {
  const l = ladderOf(config());
  t.deepEqual(
    l.steps.map((s) => [s.model, s.downgrade]),
    [
      ['big', 'none'],
      ['small', 'fallback'],
      ['small', 'clamp'],
    ],
  );
  t.is(l.maxTokensPerChoice, 100);
  t.is(l.steps[0]?.candidate.baseTokens, 27);
  // no max_tokens: the plan's default bound
  t.is(ladderOf(config(), undefined, chat()).maxTokensPerChoice, 64);
});

test('no downgrade and no clamp where the plan allows neither', (t) => {
  const l = ladderOf(config(), tenant('acme', 'strict'));
  t.deepEqual(
    l.steps.map((s) => s.downgrade),
    ['none'],
  );
});

test("a fallback outside the tenant's tier is never used; inside it, it is", (t) => {
  const outside = ladderOf(config(), tenant('acme', 'pro', { models: ['big', 'other'] }));
  t.false(outside.steps.some((s) => s.model === 'small'));
  const inside = ladderOf(config(), tenant('acme', 'pro', { models: ['big', 'small'] }));
  t.true(inside.steps.some((s) => s.model === 'small' && s.downgrade === 'fallback'));
});

test('refusals: a model without a price, a model of the wrong kind', (t) => {
  const refusal = (model: string) =>
    t.throws(() => ladderOf(config(), undefined, undefined, model), { instanceOf: GatewayError })
      ?.code;
  t.is(refusal('unknown'), 'model_not_priced');
  t.is(refusal('embed'), 'model_not_supported');
  // an embeddings request: prompt only (no completion bound); a generation fallback is not used
  const embeddings = readMeteredRequest(
    Buffer.from(JSON.stringify({ model: 'embed', input: 'x' })),
    '/v1/embeddings',
    { maxTokensCap: 32768, maxChoices: 8 },
  );
  const l = ladderOf(config(), undefined, embeddings, 'embed');
  t.is(l.maxTokensPerChoice, 0);
  t.deepEqual(
    l.steps.map((s) => s.model),
    ['embed'],
  );
});
