/**
 * tenant-auth configuration: the Kong schema (pure data, with descriptions and defaults). Its
 * typed view is config.ts; the pieces used at several levels (a plan, a tenant override) are
 * plan-fields.ts; the cross-field rules are `checkConfig` in ready.ts.
 */
import { METRICS_FIELDS, field, type KongSchemaFields } from '../../lib/schema/fields';
import { DEFAULT_API_SURFACE } from '../../lib/http/api-surface';
import { redisRecord } from '../../lib/schema/typedefs';
import { apiSurfaceField, modelAliasesField, overrideFields, planFields } from './plan-fields';

export const Schema = [
  {
    identity_sources: field.array(
      'Where the tenant comes from, in order: `consumer` (a Kong consumer authenticated by an earlier auth plugin such as key-auth) and/or `jwt` (a JWT verified by this plugin). When several sources present a credential they must name the same tenant.',
      field.string('An identity source.', { one_of: ['consumer', 'jwt'] }),
      { default: ['consumer'], required: true, len_min: 1 },
    ),
  },
  {
    consumer: field.record(
      'How a Kong consumer maps to a tenant.',
      [
        {
          tenant_id_field: field.string('Consumer field holding the tenant id.', {
            default: 'custom_id',
            one_of: ['custom_id', 'username'],
            required: true,
          }),
        },
        {
          plan_tag_prefix: field.string(
            'Consumer tag prefix that names the plan, e.g. a tag `plan:pro` gives plan `pro`.',
            { default: 'plan:', required: true, len_min: 1 },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    jwt: field.record(
      'JWT verification (used when `jwt` is among identity_sources).',
      [
        {
          header_name: field.string('Request header carrying `Bearer <token>`.', {
            default: 'authorization',
            required: true,
          }),
        },
        {
          algorithms: field.array(
            'Accepted signature algorithms. `none` is never accepted.',
            field.string('An algorithm.', { one_of: ['HS256', 'RS256', 'ES256'] }),
            { default: ['RS256', 'ES256'], required: true, len_min: 1 },
          ),
        },
        {
          hs256_secrets: field.array(
            'Shared secrets for HS256 (at least 32 bytes each). Any one may verify.',
            field.string('A secret (may be a vault reference).', {
              len_min: 32,
              referenceable: true,
            }),
            { default: [] },
          ),
        },
        {
          public_keys: field.array(
            'PEM public keys (SPKI) for RS256/ES256. Any one may verify.',
            field.string('A PEM public key.'),
            { default: [] },
          ),
        },
        {
          jwks_file: field.string(
            'Path to a JWKS JSON file on the gateway node; keys are selected by `kid`/`alg`.',
          ),
        },
        { issuer: field.string('Required `iss` claim value; null accepts any issuer.') },
        { audience: field.string('Required `aud` claim value; null accepts any audience.') },
        {
          clock_skew_seconds: field.integer('Tolerance applied to `exp` and `nbf`.', {
            default: 60,
            between: [0, 600],
          }),
        },
        {
          max_lifetime_seconds: field.integer(
            'Refuse tokens whose `exp` lies further than this in the future (limits the damage of a leaked long-lived token); null accepts any.',
            { gt: 0 },
          ),
        },
        {
          tenant_claim: field.string('Claim holding the tenant id.', {
            default: 'tenant_id',
            required: true,
          }),
        },
        {
          plan_claim: field.string('Claim holding the plan name.', {
            default: 'plan',
            required: true,
          }),
        },
      ],
      { required: true },
    ),
  },
  {
    default_plan: field.string(
      'Plan used when the credential names no plan or an unknown one. Null refuses such requests (403 unknown_plan).',
      { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 },
    ),
  },
  {
    plans: field.map(
      'Plans by name: the per-plan policy every tenant on it gets.',
      field.string('Plan name.', { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 }),
      field.record('One plan: its tool grants, models, persona and weight.', planFields),
      { default: {}, required: true },
    ),
  },
  {
    tenants: field.map(
      'Per-tenant overrides layered over the plan, by tenant id.',
      field.string('Tenant id.', { match: '^[a-z0-9][a-z0-9_-]*$', len_max: 64 }),
      field.record('Overrides for one tenant; null fields keep the plan’s value.', overrideFields),
      { default: {}, required: true },
    ),
  },
  {
    tool_policy: field.string(
      'What to do with a tool the tenant is not granted: `strip` it from `tools`, or `reject` the request (403). A `tool_choice` naming a forbidden tool is always rejected.',
      { default: 'strip', one_of: ['strip', 'reject'], required: true },
    ),
  },
  {
    model_policy: field.string(
      'What a request for a model outside its plan’s tier gets: `rewrite` it to the plan’s preferred model (the response says `X-Model-Requested` and `X-Model-Served`), or `reject` it (403 `model_not_allowed`). Plans and tenants may override it.',
      { default: 'rewrite', one_of: ['rewrite', 'reject'], required: true },
    ),
  },
  {
    model_aliases: modelAliasesField(
      'Aliases every tiered plan understands: alias → model (e.g. `fast: gpt-4o-mini`). `default` always means the plan’s preferred model unless an alias named `default` says otherwise.',
      { default: {}, required: true },
    ),
  },
  {
    models_endpoint: field.boolean(
      'Answer `GET /v1/models` and `GET /v1/models/{id}` at the gateway from the tenant’s tier (other methods on those paths: 405), so SDKs list only the tenant’s models. Plans without a tier are forwarded.',
      { default: true, required: true },
    ),
  },
  {
    persona_mode: field.string(
      'How the persona enters the chat: `prepend` a system message, or `replace` all client system messages.',
      { default: 'prepend', one_of: ['prepend', 'replace'], required: true },
    ),
  },
  {
    strip_headers: field.array(
      'Extra client header names to remove (any case), besides the gateway-owned `X-Tenant-*`, `X-Retrieval-Context`, `X-Consumer-Groups` and the identity headers of Kong auth plugins.',
      field.string('A header name.', { match: '^[A-Za-z0-9-]+$' }),
      { default: [] },
    ),
  },
  {
    upstream_auth: field.record(
      'The provider credential sent upstream in place of the client’s, and the client credential headers removed from every upstream request.',
      [
        {
          header: field.string('Upstream request header that carries the provider key.', {
            default: 'Authorization',
            match: '^[A-Za-z0-9-]+$',
            required: true,
          }),
        },
        {
          scheme: field.string(
            'Prefix of the header value before the key (`Bearer` for OpenAI-compatible APIs); empty sends the key alone.',
            { default: 'Bearer', match: '^[A-Za-z0-9-]*$', required: true },
          ),
        },
        {
          default_key: field.string(
            'Where the key for every tenant without a plan or tenant key is read: `env:NAME` or `file:/absolute/path`. Never the key itself. Null: no key is set (the client credential is still removed).',
            {},
          ),
        },
        {
          plans: field.map(
            'Key source per plan (`env:NAME` or `file:/path`), e.g. a dedicated deployment for a premium plan.',
            field.string('Plan name.', { match: '^[a-z0-9][a-z0-9_.-]*$', len_max: 64 }),
            field.string('Key source of the plan (checked when the instance starts).'),
            { default: {}, required: true },
          ),
        },
        {
          tenants: field.map(
            'Key source per tenant, for bring-your-own-key tenants; wins over the plan’s.',
            field.string('Tenant id.', { match: '^[a-z0-9][a-z0-9_-]*$', len_max: 64 }),
            field.string('Key source of the tenant (checked when the instance starts).'),
            { default: {}, required: true },
          ),
        },
        {
          strip_client_credentials: field.array(
            'Client headers that may carry a tenant’s credential, removed from every upstream request (any case). Add every `key_names` entry of your key-auth.',
            field.string('A header name.', { match: '^[A-Za-z0-9-]+$' }),
            {
              default: ['Authorization', 'apikey', 'x-api-key', 'api-key', 'Proxy-Authorization'],
              required: true,
            },
          ),
        },
      ],
      { required: true },
    ),
  },
  {
    api_surface: apiSurfaceField(
      'The APIs the front door serves (plans and tenants may replace the list): `chat`, `completions`, `responses`, `embeddings`, `models`, `showback` by default; opt-in `moderations`, `images`, `audio`, and the stateful `stored_chat_completions`, `stored_responses`, `files`, `uploads`, `batches`, `vector_stores`, `assistants`, `threads`, `fine_tuning`, `conversations` (only with one provider key per tenant). Anything else: 404 `unknown_api`; a known API not listed: 403 `api_not_enabled`.',
      { default: [...DEFAULT_API_SURFACE], required: true },
    ),
  },
  {
    store: field.string(
      "Whether the provider may keep a tenant's objects (stored responses, files...) under the provider key: `auto` on with the tenant's own key (`upstream_auth.tenants`), off on a shared one; `on` vouches the key is the tenant's alone; `scoped` on any key, the gateway recording each object's tenant so only it reaches it (responses, chat completions, files, batches, uploads, vector stores, conversations; `stored_objects`); `off`: stateful APIs 403, Responses sent with `store: false` (README).",
      { one_of: ['auto', 'on', 'off', 'scoped'], default: 'auto', required: true },
    ),
  },
  {
    stored_objects: field.record(
      'The record of which tenant owns each object the provider keeps, for tenants whose `store` is `scoped` (unused otherwise).',
      [
        {
          ttl_seconds: field.integer(
            'How long an object stays its tenant’s through the gateway after it was made (or last read, for a batch). Past it the gateway no longer lets anyone reach it (closed): set it to how long the provider keeps the objects (30 days for stored responses).',
            { default: 2592000, required: true, between: [60, 31536000] },
          ),
        },
        {
          redis: redisRecord({
            holds: 'which tenant owns each stored object',
            timeout: {
              description:
                'Deadline of one Redis call. A lookup that misses it refuses the request (503 `stored_objects_unavailable`), never lets it through.',
              default: 250,
            },
          }),
        },
      ],
      { required: true },
    ),
  },
  {
    api_base_path: field.string(
      'The path under which the upstream serves the OpenAI API, as Kong sends it upstream (after the route’s strip_path and the service’s path): `/v1` for OpenAI. The API surface is matched below it.',
      { default: '/v1', match: '^[A-Za-z0-9/._~-]*$', required: true },
    ),
  },
  {
    max_body_bytes: field.integer(
      'Largest request body accepted; larger gets 413. At most 8 MiB: kong-js-pluginserver decodes each message in time that grows with the square of its size, stalling the plugin for every tenant.',
      {
        default: 1048576,
        between: [1, 8388608],
        required: true,
      },
    ),
  },
  {
    validate_json_body: field.boolean(
      'Read and parse every request body (400 on malformed JSON) even when no policy needs it. Off saves one PDK round trip per request for plans without tool limits or persona.',
      { default: true, required: true },
    ),
  },
  {
    require_body_methods: field.array(
      'With validate_json_body, requests of these methods must carry a non-empty JSON body (400 empty_body otherwise). Empty the list on routes whose POSTs take none, such as cancel endpoints.',
      field.string('An HTTP method.', { match: '^[A-Za-z]+$' }),
      { default: ['POST', 'PUT', 'PATCH'], required: true },
    ),
  },
  ...METRICS_FIELDS,
] as const satisfies KongSchemaFields;
