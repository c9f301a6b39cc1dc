/**
 * The `capture` record token-meter declares (request capture for replay, issue 23), with the
 * config type read off it: lib/capture's recorder reads exactly what the schema declares.
 */
import type { FieldValue } from '../schema/derive';
import { field } from '../schema/fields';

export function captureRecord() {
  return field.record(
    'Request capture for replay (issue 23): for tenants whose tenant-auth plan or override sets `capture`, the log phase seals the request and its outcome under the tenant’s key and stores them in the tenant’s keyspace. Nothing is captured for other tenants.',
    [
      {
        secret_env: field.string(
          'Environment variable of the plugin server (and of the operator running `npm run replay`) holding the capture secret: 32+ bytes, hex or base64. Per-tenant keys are derived from it. Without it nothing is captured.',
          { default: 'KTA_CAPTURE_SECRET', match: '^[A-Za-z_][A-Za-z0-9_]*$', required: true },
        ),
      },
      {
        secret_file: field.string(
          'File holding the capture secret, read when the environment variable is unset.',
        ),
      },
      {
        ttl_seconds: field.integer('How long a capture is kept in Redis.', {
          default: 604800,
          between: [60, 7776000],
          required: true,
        }),
      },
      {
        max_body_bytes: field.integer(
          'Largest request body kept; a capture of a larger one keeps headers and outcome only (and cannot be replayed).',
          { default: 262144, between: [1024, 8388608], required: true },
        ),
      },
      {
        max_answer_chars: field.integer(
          'Longest answer text kept (the answer snippet keeps at most the first 64 KiB of a response).',
          { default: 16384, between: [0, 65536], required: true },
        ),
      },
    ],
    { required: true },
  );
}

/** The `capture` record as readConfig returns it. */
export type CaptureConfig = FieldValue<ReturnType<typeof captureRecord>>;
