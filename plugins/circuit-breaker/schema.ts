/**
 * circuit-breaker configuration: the Kong schema (pure data, with descriptions and defaults)
 * and the typed view of the validated config, derived from it. Cross-field rules live in `checkConfig`, run
 * when an instance starts.
 */
import type { ConfigOf } from '../../lib/schema/derive';
import { METRICS_FIELDS, field, type KongSchemaFields } from '../../lib/schema/fields';

/** The validated config as `readConfig` returns it, read off the schema (lib/schema/derive.ts). */
export type CircuitBreakerConfig = ConfigOf<typeof Schema>;
export type UpstreamConfig = ConfigOf<typeof upstreamFields>;
/** Routing of a plan or a tenant: `upstream`, fallback and bulkhead size, null to inherit. */
export type RouteConfig = ConfigOf<ReturnType<typeof routeFields>>;
export type BreakerConfig = CircuitBreakerConfig['breaker'];
export type BulkheadConfig = CircuitBreakerConfig['bulkhead'];
export type BreakerScope = UpstreamConfig['breaker_scope'];

const NAME = { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 } as const;

const upstreamFields = [
  {
    host: field.string('Host name or IP address of the upstream (connected to directly).', {
      required: true,
      len_min: 1,
    }),
  },
  { port: field.integer('Port of the upstream.', { required: true, between: [1, 65535] }) },
  {
    path: field.string(
      'Upstream request path replacing the route’s (e.g. a deployment’s `/v1/chat/completions`); null keeps the path.',
      { match: '^/' },
    ),
  },
  {
    model: field.string(
      'Model name written into the JSON request body for this upstream (e.g. a dedicated deployment’s model); null keeps the client’s.',
      { len_min: 1 },
    ),
  },
  {
    breaker_scope: field.string(
      'One breaker for everyone routed to this upstream (`upstream`), or one per tenant on it (`tenant`), so one tenant’s failing prompts cannot open the breaker of the others.',
      { default: 'tenant', one_of: ['upstream', 'tenant'], required: true },
    ),
  },
] as const satisfies KongSchemaFields;

const routeFields = (who: string) =>
  [
    {
      upstream: field.string(
        `Name (in \`upstreams\`) of the upstream ${who} is routed to; null keeps the service’s own target.`,
        NAME,
      ),
    },
    {
      fallback_upstream: field.string(
        `Name (in \`upstreams\`) of the upstream ${who} is routed to while its breaker is open; null answers 503 instead.`,
        NAME,
      ),
    },
    {
      fallback_model: field.string(
        `Model written into the request body when ${who} falls back (overrides the fallback upstream’s \`model\`).`,
        { len_min: 1 },
      ),
    },
    {
      max_in_flight: field.integer(
        `Bulkhead size for ${who}, replacing \`bulkhead.max_in_flight\`.`,
        { between: [1, 100000] },
      ),
    },
  ] as const satisfies KongSchemaFields;

export const Schema = [
  {
    upstreams: field.map(
      'Named upstream targets that plans and tenants can be routed to (dedicated deployments, other providers, fallbacks).',
      field.string('Upstream name (lower case).', NAME),
      field.record('An upstream target reached with kong.service.set_target.', upstreamFields),
      { default: {}, required: true },
    ),
  },
  {
    plans: field.map(
      'Routing per plan (the TenantContext’s plan): upstream, fallback and bulkhead size.',
      field.string('Plan name as tenant-auth resolves it.', NAME),
      field.record('Routing of one plan.', routeFields('every tenant of the plan')),
      { default: {}, required: true },
    ),
  },
  {
    tenants: field.map(
      'Routing per tenant id; each non-null field replaces the plan’s.',
      field.string('Tenant id, as tenant-auth validates it.', {
        match: '^[a-z0-9][a-z0-9_-]*$',
        len_max: 64,
      }),
      field.record('Routing of one tenant.', routeFields('the tenant')),
      { default: {}, required: true },
    ),
  },
  {
    service_breaker_scope: field.string(
      'Breaker scope for requests that stay on the service’s own target: `upstream` (one breaker per service target, shared by its tenants) or `tenant`.',
      { default: 'upstream', one_of: ['upstream', 'tenant'], required: true },
    ),
  },
  {
    breaker: field.record(
      'When a breaker opens and how it recovers (cockatiel circuit breaker).',
      [
        {
          kind: field.string(
            '`consecutive`: open after N upstream failures in a row. `sampling`: open when the failure rate over a sliding window reaches a threshold.',
            { default: 'consecutive', one_of: ['consecutive', 'sampling'], required: true },
          ),
        },
        {
          consecutive_failures: field.integer(
            'Failures in a row that open a consecutive breaker.',
            { default: 5, between: [1, 10000], required: true },
          ),
        },
        {
          sampling_threshold: field.number(
            'Failure rate (0..1] over the window that opens a sampling breaker.',
            { default: 0.5, between: [0.01, 1], required: true },
          ),
        },
        {
          sampling_duration_ms: field.integer(
            'Length of the sampling breaker’s sliding window, in milliseconds.',
            { default: 30000, between: [1000, 3600000], required: true },
          ),
        },
        {
          sampling_minimum_rps: field.number(
            'Requests per second the window must see before a sampling breaker may open.',
            { default: 1, gt: 0, required: true },
          ),
        },
        {
          half_open_after_ms: field.integer(
            'Time an open breaker refuses requests before it lets one probe through.',
            { default: 10000, between: [100, 3600000], required: true },
          ),
        },
        {
          probe_timeout_ms: field.integer(
            'A half-open probe without a verdict after this long counts as a failure and reopens the breaker (its log event was lost, or it is still running).',
            { default: 60000, between: [100, 3600000], required: true },
          ),
        },
        {
          count_429_as_failure: field.boolean(
            'Count an upstream 429 (overload) as a breaker failure. Off: 429s are counted apart and do not move the breaker.',
            { default: false, required: true },
          ),
        },
        {
          slow_call_ms: field.integer(
            'An upstream answer slower than this (time to the response headers) counts as a failure; 0 disables.',
            { default: 0, between: [0, 3600000], required: true },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    bulkhead: field.record(
      'Per tenant, per gateway node: a cap on upstream calls in flight, with a small queue (cockatiel bulkhead).',
      [
        {
          max_in_flight: field.integer(
            'Upstream calls one tenant may have in flight on this node.',
            { default: 32, between: [1, 100000], required: true },
          ),
        },
        {
          queue: field.integer(
            'Requests of a tenant that may wait for a slot; beyond it they get 503 at once.',
            { default: 4, between: [0, 10000], required: true },
          ),
        },
        {
          queue_timeout_ms: field.integer(
            'Longest wait in the queue before a 503 (keep it well below Kong’s 60 s plugin-server timeout).',
            { default: 2000, between: [0, 30000], required: true },
          ),
        },
        {
          slot_ttl_ms: field.integer(
            'A slot whose log event never came is released after this long, so a lost event cannot leak it. Longer than your longest stream.',
            { default: 300000, between: [1000, 3600000], required: true },
          ),
        },
        {
          retry_after_seconds: field.integer('`Retry-After` sent with a bulkhead refusal.', {
            default: 1,
            between: [0, 3600],
            required: true,
          }),
        },
      ],
      { required: true },
    ),
  },
  {
    max_body_bytes: field.integer(
      'Largest request body read when a model must be written into it (fallback or upstream `model`); larger gets 413.',
      { default: 1048576, between: [1, 8388608], required: true },
    ),
  },
  ...METRICS_FIELDS,
] as const satisfies KongSchemaFields;

/** Cross-field rules, with the bad value in the message. Throws on the first violation. */
export function checkConfig(c: CircuitBreakerConfig): void {
  const known = (name: string | null, where: string): void => {
    if (name !== null && !Object.prototype.hasOwnProperty.call(c.upstreams, name)) {
      throw new Error(`${where} names upstream '${name}', which is not one of upstreams`);
    }
  };
  for (const [kind, routes] of [
    ['plans', c.plans],
    ['tenants', c.tenants],
  ] as const) {
    for (const [name, r] of Object.entries(routes)) {
      known(r.upstream, `${kind}.${name}.upstream`);
      known(r.fallback_upstream, `${kind}.${name}.fallback_upstream`);
    }
  }
}
