// Kong's bundled `opentelemetry` plugin (priority 14), accepted but not emulated: the harness
// creates no spans and exports nothing (Kong's tracing lives in its runloop and nginx timers,
// kong/observability/tracing/*). A kong.yml that configures the plugin loads on both gateways;
// its config is checked against kong/plugins/opentelemetry/schema.lua (3.9.3) with
// typedefs.queue (kong/tools/queue_schema.lua) and typedefs.propagation
// (kong/observability/tracing/propagation/schema.lua). Traces are tested on the real Kong
// (test/plugins/tracing.test.ts).
import type { FieldList } from './config/schema';
import type { LoadedPlugin } from './plugins';

export const OPENTELEMETRY_PRIORITY = 14;

const url = { type: 'string' } as const;
const timeout = { type: 'integer', between: [0, 2 ** 31 - 2] as [number, number] } as const;
const FORMATS = ['w3c', 'b3', 'b3-single', 'jaeger', 'ot', 'aws', 'gcp', 'datadog', 'instana'];

export const openTelemetryConfigFields: FieldList = [
  { traces_endpoint: url },
  { logs_endpoint: url },
  { headers: { type: 'map', keys: { type: 'string' }, values: { type: 'string' } } },
  {
    resource_attributes: {
      type: 'map',
      keys: { type: 'string', required: true },
      values: { type: 'string', required: true },
    },
  },
  {
    queue: {
      type: 'record',
      required: true,
      default: { max_batch_size: 200 },
      fields: [
        { max_batch_size: { type: 'integer', default: 1, between: [1, 1000000] } },
        { max_coalescing_delay: { type: 'number', default: 1, between: [0, 3600] } },
        { max_entries: { type: 'integer', default: 10000, between: [1, 1000000] } },
        { max_bytes: { type: 'integer' } },
        { max_retry_time: { type: 'number', default: 60 } },
        { initial_retry_delay: { type: 'number', default: 0.01, between: [0.001, 1000000] } },
        { max_retry_delay: { type: 'number', default: 60, between: [0.001, 1000000] } },
        { concurrency_limit: { type: 'integer', default: 1, one_of: [-1, 1] } },
      ],
    },
  },
  { batch_span_count: { type: 'integer' } },
  { batch_flush_delay: { type: 'integer' } },
  { connect_timeout: { ...timeout, default: 1000 } },
  { send_timeout: { ...timeout, default: 5000 } },
  { read_timeout: { ...timeout, default: 5000 } },
  { http_response_header_for_traceid: { type: 'string' } },
  {
    header_type: {
      type: 'string',
      default: 'preserve',
      one_of: [
        'preserve',
        'ignore',
        'b3',
        'b3-single',
        'w3c',
        'jaeger',
        'ot',
        'aws',
        'gcp',
        'datadog',
      ],
    },
  },
  { sampling_rate: { type: 'number', between: [0, 1] } },
  {
    propagation: {
      type: 'record',
      required: true,
      default: { default_format: 'w3c' },
      fields: [
        {
          extract: {
            type: 'array',
            elements: { type: 'string', one_of: FORMATS.filter((f) => f !== 'b3-single') },
          },
        },
        { clear: { type: 'array', elements: { type: 'string' } } },
        {
          inject: { type: 'array', elements: { type: 'string', one_of: ['preserve', ...FORMATS] } },
        },
        { default_format: { type: 'string', one_of: FORMATS, required: true } },
      ],
    },
  },
];

/**
 * The schema's entity check and typedefs.url, which validatePluginConfig does not run, with
 * Kong 3.9.3's messages (checked against its refusal of a kong.yml).
 */
export function openTelemetryConfigErrors(config: Record<string, unknown>): string[] {
  const errors: string[] = [];
  const endpoints = ['traces_endpoint', 'logs_endpoint'] as const;
  if (endpoints.every((k) => config[k] === undefined))
    errors.push(
      "config: at least one of these fields must be non-empty: 'traces_endpoint', 'logs_endpoint'",
    );
  for (const k of endpoints) {
    const v = config[k];
    if (typeof v !== 'string') continue;
    let ok = false;
    try {
      ok = /^https?:$/.test(new URL(v).protocol);
    } catch {
      ok = false;
    }
    if (!ok) errors.push(`config.${k}: missing host in url`);
  }
  return errors;
}

/** Loaded with no phase: the harness never calls it. */
export const openTelemetryPlugin: LoadedPlugin = {
  name: 'opentelemetry',
  priority: OPENTELEMETRY_PRIORITY,
  phases: new Set(),
  noConsumer: false,
};
