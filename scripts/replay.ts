/**
 * `npm run replay -- <request-id>`: from a logged request to an eval case, in one command.
 *
 * The request id is Kong's (`X-Kong-Request-Id` of the answer, and in every error body). The
 * capture of that request — taken only for tenants whose plan or override opted in
 * (tenant-auth `capture`) — is loaded from Redis and opened with the tenant's key (derived
 * from the capture secret), replayed through the front door as it is configured now with the
 * tenant's own API key, and the two outcomes are printed side by side. `--to-eval` writes the
 * request as a case of the tenant's eval set (evals/<tenant>/regressions/<id>.yaml).
 *
 *   npm run replay -- 3f2c…                       # the tenant from the signed owner entry
 *   npm run replay -- 3f2c… --tenant globex       # only globex's captures are looked at
 *   npm run replay -- 3f2c… --to-eval [--id my-case]
 *   npm run replay -- 3f2c… --no-send             # show the capture only (no request is sent)
 *   npm run replay -- 3f2c… --bypass-cache        # Cache-Control: no-store (tenant-cache bypasses)
 *
 * Where things are (docs/operations.md "Replaying a captured request"): the Redis and key
 * namespace of token-meter in --config (default kong.yml; REDIS_URL wins); the secret from the
 * variable its `capture.secret_env` names, else its `capture.secret_file`, else
 * .run/capture.secret (what `npm start` made); the front door from REPLAY_FRONTDOOR_URL, else
 * EVAL_FRONTDOOR_URL, else http://127.0.0.1:8000; the tenant's key from REPLAY_API_KEY_<TENANT>,
 * else EVAL_API_KEY_<TENANT>, else `api_key` of evals/<tenant>/tenant.yaml.
 *
 * Exit codes: 0 done, 1 no capture to replay (or it does not open), 2 bad arguments,
 * 3 Redis or the front door failed.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parse } from 'yaml';
import { CaptureKeyring, CaptureSecretError, loadCaptureSecret } from '../lib/capture/crypto';
import { closeAllRedis, createRedis, waitForRedis } from '../lib/redis/client';
import { createKeyspace } from '../lib/redis/keys';
import { readConfig } from '../lib/schema/config';
import { Schema as MeterSchema } from '../plugins/token-meter/schema';
import {
  ReplayError,
  diffOutcomes,
  type ExpectedOutcome,
  findCapture,
  renderDiff,
  replay,
  requestSpecOf,
  tenantApiKey,
  writeEvalCase,
} from './replay/replay';

const ROOT = path.resolve(
  __dirname,
  '..',
  existsSync(path.join(__dirname, '..', 'package.json')) ? '' : '..',
);

const USAGE = `usage: npm run replay -- <request-id> [--tenant ID] [--to-eval [--id CASE_ID]] [--no-send] [--bypass-cache]
                        [--config kong.yml] [--dir evals]
environment: REDIS_URL; the capture secret (kong.yml token-meter capture.secret_env, default
KTA_CAPTURE_SECRET, else .run/capture.secret); REPLAY_FRONTDOOR_URL (default
http://127.0.0.1:8000); REPLAY_API_KEY_<TENANT> or EVAL_API_KEY_<TENANT>. See docs/operations.md.`;

interface MeterSettings {
  redisUrl: string;
  namespace: string;
  secretEnv: string;
  secretFile: string | null;
}

/** token-meter's Redis, key namespace and capture secret source, from the declarative config. */
function meterSettings(configFile: string, env: NodeJS.ProcessEnv): MeterSettings {
  const doc = parse(readFileSync(configFile, 'utf8')) as {
    plugins?: Array<{ name?: string; config?: Record<string, unknown> }>;
  };
  // Read as the plugin reads it: defaults, and the deprecated flat Redis fields resolved.
  const meter = readConfig(
    MeterSchema,
    (doc.plugins ?? []).find((p) => p.name === 'token-meter')?.config ?? {},
  );
  return {
    redisUrl: env.REDIS_URL ?? meter.redis.url,
    namespace: meter.redis.key_namespace,
    secretEnv: meter.capture.secret_env,
    secretFile: meter.capture.secret_file,
  };
}

function keyringOf(s: MeterSettings, env: NodeJS.ProcessEnv): CaptureKeyring {
  const local = path.join(ROOT, '.run', 'capture.secret');
  const file = s.secretFile ?? (existsSync(local) ? local : null);
  try {
    return new CaptureKeyring(loadCaptureSecret({ env: s.secretEnv, file }, env));
  } catch (e) {
    if (e instanceof CaptureSecretError) throw new ReplayError(e.message, 2);
    throw e;
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      tenant: { type: 'string' },
      'to-eval': { type: 'boolean', default: false },
      id: { type: 'string' },
      'no-send': { type: 'boolean', default: false },
      'bypass-cache': { type: 'boolean', default: false },
      config: { type: 'string', default: path.join(ROOT, 'kong.yml') },
      dir: { type: 'string', default: path.join(ROOT, 'evals') },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const requestId = positionals[0];
  if (requestId === undefined || positionals.length > 1) {
    throw new ReplayError('name exactly one request id', 2);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{7,127}$/.test(requestId)) {
    throw new ReplayError(`not a request id: ${JSON.stringify(requestId.slice(0, 64))}`, 2);
  }
  const env = process.env;
  const settings = meterSettings(path.resolve(values.config), env);
  const keyring = keyringOf(settings, env);
  const keys = createKeyspace(settings.namespace);
  const redis = createRedis({
    url: settings.redisUrl,
    commandTimeoutMs: 5000,
    log: () => undefined,
  });
  let found;
  try {
    await waitForRedis(redis, 5000).catch((e: unknown) => {
      throw new ReplayError(`Redis: ${e instanceof Error ? e.message : String(e)}`, 3);
    });
    found = await findCapture(redis, keys, keyring, requestId, values.tenant);
  } finally {
    await closeAllRedis();
  }
  const { record, ttlSeconds } = found;
  const spec = requestSpecOf(record);
  const out = process.stdout;
  out.write(
    `capture: request ${record.requestId} of tenant ${record.tenant} (plan ${record.plan}), ` +
      `captured ${new Date(record.capturedAt).toISOString()}, expires in ${Math.round(ttlSeconds / 3600)} h\n` +
      `  ${spec.method} ${spec.path}  headers: ${Object.keys(spec.headers).join(', ') || '-'}  ` +
      `body: ${record.request.bodyBytes} bytes\n`,
  );
  let expected: ExpectedOutcome = record.outcome;
  let source: 'replay' | 'capture' = 'capture';
  if (!values['no-send']) {
    const frontDoor = env.REPLAY_FRONTDOOR_URL ?? env.EVAL_FRONTDOOR_URL ?? 'http://127.0.0.1:8000';
    const apiKey = tenantApiKey(record.tenant, path.resolve(values.dir), env);
    if (!apiKey) {
      throw new ReplayError(
        `no API key for ${record.tenant}: set REPLAY_API_KEY_${record.tenant.toUpperCase().replace(/[^A-Z0-9]/g, '_')} or api_key in evals/${record.tenant}/tenant.yaml`,
        2,
      );
    }
    const now = await replay(frontDoor, record, apiKey, values['bypass-cache']);
    out.write(
      `replay: through ${frontDoor} as ${record.tenant}, request ${now.requestId ?? '?'}\n\n`,
    );
    const rows = diffOutcomes(record, now);
    out.write(`${renderDiff(rows)}\n\n`);
    const changed = rows.filter((r) => !r.same).map((r) => r.field);
    out.write(changed.length === 0 ? 'no difference\n' : `changed: ${changed.join(', ')}\n`);
    expected = now;
    source = 'replay';
  }
  if (values['to-eval']) {
    const file = writeEvalCase(path.resolve(values.dir), record, expected, {
      ...(values.id ? { id: values.id } : {}),
      source,
    });
    out.write(`eval case written: ${path.relative(process.cwd(), file) || file}\n`);
    out.write(`run it: npm run eval -- --tenant ${record.tenant}\n`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const code = e instanceof ReplayError ? e.exitCode : 3;
    process.stderr.write(`replay: ${e instanceof Error ? e.message : String(e)}\n`);
    if (code === 2) process.stderr.write(`${USAGE}\n`);
    process.exit(code);
  },
);
