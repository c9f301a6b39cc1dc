/**
 * The official OpenAI Python SDK (PyPI `openai`, pinned in scripts/services/python-sdk.sh,
 * installed by `npm test` into .run/python-sdk/) against the front door of the repo's kong.yml,
 * configured with nothing but `base_url` and `api_key`. test/sdk/openai_python_check.py runs the
 * calls and prints what the SDK gave back (results, or the typed exception's class, status,
 * type and code); this file asserts on it. Runs on the gateway GATEWAY names. Without the venv
 * it fails and says how to install it (it never skips).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Closers, ROOT } from '../helpers/frontdoor';
import { startKongYmlDoor, type KongYmlDoor } from '../helpers/kong-yml-door';

const PYTHON = path.join(ROOT, '.run', 'python-sdk', 'bin', 'python');
const SCRIPT = path.join(ROOT, 'test', 'sdk', 'openai_python_check.py');
const ACME = 'acme-demo-key';
const GLOBEX = 'globex-demo-key';
const RATEY = 'ratey-py-key';

interface Refusal {
  class: string | null;
  status: number;
  type: unknown;
  code: unknown;
  message: string;
  retry_after: string | null;
}

interface Results {
  sdk_version: string;
  chat: { object: string; content_is_str: boolean; prompt_tokens: number };
  stream: { chunks: number; text: string; last_choices: number; usage_completion_tokens: number };
  embeddings: { count: number; dimensions: number };
  models: { ids: string[] };
  tools: { first: string; second_content_is_str: boolean };
  no_key: Refusal;
  wrong_key: Refusal;
  two_keys: Refusal;
  forbidden_tool: Refusal;
  too_large: Refusal;
  bad_request: Refusal;
  rate_limited: Refusal;
  upstream_failure: Refusal;
}

const closers = new Closers();
let door: KongYmlDoor | undefined;

test.before(async () => {
  if (!existsSync(PYTHON)) {
    throw new Error(
      `no OpenAI Python SDK venv at ${PYTHON}: run \`scripts/services/python-sdk.sh install\` (npm test does)`,
    );
  }
  door = await startKongYmlDoor(
    closers.add,
    (p) => {
      if (p.name === 'tenant-auth' && p.config) p.config.max_body_bytes = 65_536;
      if (p.name === 'tenant-ratelimit' && p.config)
        p.config.tenants = {
          ...(p.config.tenants as object),
          ratey: { requests_per_minute: 1, request_burst: 1 },
        };
    },
    [
      {
        username: 'ratey-app',
        custom_id: 'ratey',
        tags: ['plan:free'],
        keyauth_credentials: [{ key: RATEY }],
      },
    ],
    // See test/sdk/openai-node.test.ts: the shared Milvus holds knowledge under another secret.
    ['retrieval-injector'],
  );
});
test.after.always(() => closers.closeAll());

async function runPython(mode: 'all' | 'upstream-failure'): Promise<Partial<Results>> {
  if (!door) throw new Error('the front door did not start');
  const { stdout } = await promisify(execFile)(
    PYTHON,
    [SCRIPT, `${door.url}/v1`, ACME, GLOBEX, RATEY, mode],
    { timeout: 90_000, env: { PATH: process.env.PATH ?? '', OPENAI_API_KEY: '' } },
  );
  return JSON.parse(stdout) as Partial<Results>;
}

test.serial(
  'the Python SDK: chat, stream, embeddings, models, tools and typed errors',
  async (t) => {
    const r = await runPython('all');
    t.is(r.sdk_version, '3.51.0');
    t.like(r.chat, { object: 'chat.completion', content_is_str: true });
    t.true((r.chat?.prompt_tokens ?? 0) > 0);
    t.true((r.stream?.chunks ?? 0) > 2);
    t.true((r.stream?.text.length ?? 0) > 0);
    t.is(r.stream?.last_choices, 0);
    t.true((r.stream?.usage_completion_tokens ?? 0) > 0, 'usage with include_usage');
    t.is(r.embeddings?.count, 2);
    t.true((r.embeddings?.dimensions ?? 0) > 0);
    t.true(r.models?.ids.includes('gpt-4o'), r.models?.ids.join(', '));
    t.like(r.tools, { first: 'chat.completion', second_content_is_str: true });

    t.like(r.no_key, { class: 'AuthenticationError', status: 401 });
    t.is(typeof r.no_key?.type, 'string');
    t.like(r.wrong_key, { class: 'AuthenticationError', status: 401 });
    t.like(r.two_keys, {
      class: 'AuthenticationError',
      status: 401,
      type: 'authentication_error',
      code: 'conflicting_credentials',
    });
    t.like(r.forbidden_tool, { class: 'PermissionDeniedError', status: 403 });
    t.is(typeof r.forbidden_tool?.code, 'string');
    t.like(r.too_large, { status: 413 });
    t.is(typeof r.too_large?.code, 'string');
    t.like(r.bad_request, { class: 'BadRequestError', status: 400 });
    t.is(typeof r.bad_request?.type, 'string');
    t.like(r.rate_limited, { class: 'RateLimitError', status: 429 });
    t.is(typeof r.rate_limited?.code, 'string');
    t.truthy(r.rate_limited?.retry_after);
  },
);

test.serial('the Python SDK: an upstream failure is an InternalServerError', async (t) => {
  if (!door) throw new Error('the front door did not start');
  door.upstream.configure({
    failure: { mode: 'status', status: 503, count: 1, pathPrefix: '/v1/chat' },
  });
  try {
    const r = await runPython('upstream-failure');
    t.like(r.upstream_failure, { class: 'InternalServerError', status: 503 });
    t.is(typeof r.upstream_failure?.type, 'string');
  } finally {
    door.upstream.configure({ failure: null });
  }
});
