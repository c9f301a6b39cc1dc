/**
 * token-meter's Kong schema (pure data): every field with its description, default and
 * constraint. Its typed view and cross-field rules are in config.ts.
 */
import { METRICS_FIELDS, field, type KongSchemaFields } from '../../lib/schema/fields';
import { flatRedisAliases, redisRecord } from '../../lib/schema/typedefs';
import { captureRecord } from '../../lib/capture/schema';
import { PLUGIN_NAME } from './name';

const basePriceFields = [
  {
    prompt_per_million: field.number('Price of one million prompt (input) tokens, in USD.', {
      required: true,
      between: [0, 100000],
    }),
  },
  {
    completion_per_million: field.number(
      'Price of one million completion (output) tokens, in USD. Reasoning tokens are completion tokens (OpenAI and Anthropic count them in completion_tokens / output_tokens) and are billed at this price, once.',
      { required: true, between: [0, 100000] },
    ),
  },
  {
    cached_prompt_per_million: field.number(
      'Price of one million prompt tokens served from the provider prompt cache; null uses the prompt price.',
      { between: [0, 100000] },
    ),
  },
] as const satisfies KongSchemaFields;

const priceFields = [
  {
    kind: field.string(
      'What the model does: `generation` (chat, completions, responses) or `embedding` (the embeddings API). A request on an API its kind does not serve is refused with 400 model_not_supported before anything is reserved, and a downgrade never crosses kinds. null: not declared, any API.',
      { one_of: ['generation', 'embedding'] },
    ),
  },
  ...basePriceFields,
  {
    long_context: field.record(
      'Long-context tier: a request whose prompt holds more than above_prompt_tokens tokens is billed, prompt and completion, at these prices (as providers bill long prompts: e.g. Gemini 2.5 Pro above 200k). Reserved at the tier its estimated prompt falls in, settled at the tier its real prompt fell in. null: one price at every length.',
      [
        {
          above_prompt_tokens: field.integer(
            'Prompt tokens past which the long-context prices apply (strictly more than this).',
            { required: true, between: [1, 100000000] },
          ),
        },
        ...basePriceFields,
      ],
      // Kong makes a plugin config's records required unless told otherwise (entity.lua).
      { required: false },
    ),
  },
] as const satisfies KongSchemaFields;

const planFields = [
  {
    budget_tokens: field.integer(
      'Tokens (prompt + completion) a tenant of this plan may use per period; null: no token cap.',
      { gt: 0 },
    ),
  },
  {
    budget_usd: field.number(
      'Money a tenant of this plan may spend per period, in USD at the configured prices; null: no money cap.',
      { gt: 0 },
    ),
  },
  {
    soft_threshold: field.number(
      'Share of the budget (0–1) past which requests go to the plan fallback model when one is set and allowed.',
      { default: 0.8, between: [0, 1], required: true },
    ),
  },
  {
    allow_downgrade: field.boolean(
      'Rewrite the model to the tenant fallback model (tenant-auth policy) near or at the cap.',
      { default: true, required: true },
    ),
  },
  {
    allow_clamp: field.boolean(
      'Lower max_tokens to what the remaining budget covers instead of refusing, when it stays above min_clamp_tokens.',
      { default: true, required: true },
    ),
  },
  {
    min_clamp_tokens: field.integer(
      'Smallest max_tokens per choice a clamped request may keep; below it the request is refused.',
      { default: 16, between: [1, 1000000], required: true },
    ),
  },
  {
    default_max_tokens: field.integer(
      'max_tokens set on requests of this plan that give none; null uses the plugin default_max_tokens.',
      { between: [1, 1000000] },
    ),
  },
] as const satisfies KongSchemaFields;

const overrideFields = [
  { budget_tokens: field.integer('Replaces the plan token budget for this tenant.', { gt: 0 }) },
  { budget_usd: field.number('Replaces the plan money budget (USD) for this tenant.', { gt: 0 }) },
  {
    soft_threshold: field.number('Replaces the plan soft threshold for this tenant.', {
      between: [0, 1],
    }),
  },
] as const satisfies KongSchemaFields;

const NAME = { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 };

const REDIS = redisRecord({
  holds: 'budgets, reservations and the ledger',
  timeout: {
    description:
      'Deadline of each Redis call; past it Redis counts as unavailable (see on_redis_unavailable).',
    default: 250,
  },
});

export const Schema = [
  { redis: REDIS },
  ...flatRedisAliases(PLUGIN_NAME, REDIS),
  {
    period: field.string(
      'Budget period, calendar UTC: `month`, `day` or `hour`. Budgets reset at its start.',
      { default: 'month', one_of: ['month', 'day', 'hour'], required: true },
    ),
  },
  {
    plans: field.map(
      'Budgets by plan name (the plan in the TenantContext).',
      field.string('Plan name.', NAME),
      field.record('The budget of one plan.', planFields),
      { default: {}, required: true },
    ),
  },
  {
    tenants: field.map(
      'Per-tenant budget overrides, by tenant id.',
      field.string('Tenant id.', { match: '^[a-z0-9][a-z0-9_-]*$', len_max: 64 }),
      field.record('Overrides of one tenant; null fields keep the plan value.', overrideFields),
      { default: {}, required: true },
    ),
  },
  {
    unlisted_plan: field.string(
      'A tenant whose plan is not in `plans`: `refuse` (500 plugin_misconfigured) or `meter_only` (ledger, no cap).',
      { default: 'refuse', one_of: ['refuse', 'meter_only'], required: true },
    ),
  },
  {
    prices: field.map(
      'Prices by model name as sent in the request `model` field (exact match).',
      field.string('Model name.', { match: '^[A-Za-z0-9][A-Za-z0-9_.:/-]*$', len_max: 128 }),
      field.record('Prices of one model.', priceFields),
      { default: {}, required: true },
    ),
  },
  {
    unknown_model: field.string(
      'A model without a price: `refuse` (400 model_not_priced) or meter it at `default_price`.',
      { default: 'refuse', one_of: ['refuse', 'default_price'], required: true },
    ),
  },
  {
    default_price: field.record(
      'Prices used for unknown models when unknown_model is default_price.',
      priceFields,
      {
        required: true,
        default: { prompt_per_million: 10, completion_per_million: 30 },
      },
    ),
  },
  {
    default_max_tokens: field.integer(
      'max_tokens the gateway sets on a request that gives none, so its worst case is bounded.',
      { default: 1024, between: [1, 1000000], required: true },
    ),
  },
  {
    max_tokens_cap: field.integer(
      'Largest max_tokens a request may ask for; more is refused (400 max_tokens_too_large).',
      { default: 32768, between: [1, 1000000], required: true },
    ),
  },
  {
    max_choices: field.integer('Largest `n` a request may ask for; more is refused (400).', {
      default: 8,
      between: [1, 128],
      required: true,
    }),
  },
  {
    context_headroom_tokens: field.integer(
      'Prompt tokens reserved on top of the estimate for context a later plugin injects (retrieval).',
      { default: 0, between: [0, 1000000], required: true },
    ),
  },
  {
    reservation_ttl_seconds: field.integer(
      'A reservation not settled within this time (a lost log event, a dead node) is settled as estimated, with a ledger entry marked settled_by expiry. Keep it above the longest request.',
      { default: 600, between: [10, 86400], required: true },
    ),
  },
  {
    ledger_retention_days: field.integer(
      'Days the ledger of a period is kept in Redis after the period ends (showback, chargeback).',
      { default: 400, between: [1, 3650], required: true },
    ),
  },
  {
    on_redis_unavailable: field.string(
      'When Redis cannot reserve: `refuse` (503, Retry-After) or `spool` (serve unchecked, settle from the local spool once Redis is back).',
      { default: 'refuse', one_of: ['refuse', 'spool'], required: true },
    ),
  },
  {
    spool_dir: field.string(
      'Directory where settlements wait while Redis is unavailable; replayed and deduplicated by request id.',
      { default: '/tmp/kong-token-meter-spool', required: true, len_min: 1 },
    ),
  },
  {
    replay_interval_seconds: field.integer('How often the spool is replayed into Redis.', {
      default: 5,
      between: [1, 3600],
      required: true,
    }),
  },
  {
    expiry_sweep_interval_seconds: field.integer(
      'How often each plugin server settles expired reservations (log phases that never ran) as estimated ledger entries, for tenants that send nothing more.',
      { default: 30, between: [1, 3600], required: true },
    ),
  },
  {
    batches: field.record(
      'The Batches API on a metered route: a batch is reserved at creation from its input file (read when it was uploaded here), held past its completion window, and settled from the usage the provider reports on the finished batch.',
      [
        {
          price_ratio: field.number(
            'Share of the model prices a batch is billed at (OpenAI bills batches at half price: 0.5).',
            { default: 0.5, between: [0.01, 1], required: true },
          ),
        },
        {
          reservation_ttl_seconds: field.integer(
            'How long a batch reservation is held unsettled before it is billed at its bound, estimated: keep it past the 24 h completion window and the time a client takes to read the finished batch.',
            { default: 172800, between: [86400, 2592000], required: true },
          ),
        },
        {
          max_input_bytes: field.integer(
            'Largest upload the meter reads for batch input lines; a larger file passes unread, and a batch made of it is refused (400 batch_input_unmetered).',
            { default: 33554432, between: [1024, 209715200], required: true },
          ),
        },
        {
          input_ttl_seconds: field.integer(
            'How long what the meter read in an uploaded batch input file is kept (a batch made of the file later finds nothing and is refused).',
            { default: 2592000, between: [3600, 31536000], required: true },
          ),
        },
      ],
      {
        required: true,
        default: {
          price_ratio: 0.5,
          reservation_ttl_seconds: 172800,
          max_input_bytes: 33554432,
          input_ttl_seconds: 2592000,
        },
      },
    ),
  },
  {
    showback: field.boolean(
      'Answer GET /v1/organization/usage/completions and /v1/organization/costs with the tenant own ledger.',
      { default: true, required: true },
    ),
  },
  {
    capture: captureRecord(),
  },
  ...METRICS_FIELDS,
] as const satisfies KongSchemaFields;
