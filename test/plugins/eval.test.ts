/**
 * `npm run eval` end to end: the eval CLI (dist/scripts/eval.js, what scripts/eval.sh runs)
 * starts the gateway GATEWAY names with the repo's kong.yml, runs a small eval set of the
 * test's own through it, and prints the per-tenant table. A deliberately wrong case is
 * reported as failed with its reason, and its tenant fails the gate (exit 1) while the other
 * passes. Then the same CLI against a "real provider" (a mock that demands its own API key):
 * the chain's requests reach it through the eval's tap with the provider's key, the
 * `requires: real` answer cases apply, and the baseline is recorded.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startMockUpstream } from '../../mock-upstream/index';
import { ROOT, gatewayKind } from '../helpers/frontdoor';

const PERSONA = "You are Acme Corp's support assistant. Only discuss Acme products.";

function runEval(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    MILVUS_ADDRESS: process.env.MILVUS_ADDRESS ?? '127.0.0.1:19530',
    EVAL_GATEWAY: gatewayKind(),
  };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'dist', 'scripts', 'eval.js'), ...args],
      { cwd: ROOT, env: { ...base, ...env }, timeout: 280_000, maxBuffer: 4 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function write(dir: string, file: string, text: string): void {
  mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  writeFileSync(path.join(dir, file), text);
}

const chat = (model: string, content: string) =>
  JSON.stringify({ model, messages: [{ role: 'user', content }] });

test.serial(
  'a small eval through the gateway: per-tenant counts, the wrong case failed, its tenant below baseline',
  async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'eval-e2e-'));
    write(
      dir,
      'acme/tenant.yaml',
      'api_key: acme-demo-key\nknowledge: [examples/knowledge/acme]\n',
    );
    write(
      dir,
      'acme/cases.yaml',
      `cases:
  - id: persona
    request: { body: ${chat('gpt-4o', 'Do you sell anvils?')} }
    expect: { status: 200, upstream: { persona: "${PERSONA}" } }
  - id: tier
    request: { body: ${chat('gpt-4.1', 'hi')} }
    expect: { status: 200, headers: { x-model-served: gpt-4o }, upstream: { model: gpt-4o } }
  - id: retrieval
    request: { body: ${chat('gpt-4o', 'Can Acme products be returned within 30 days with the original receipt?')} }
    expect: { status: 200, retrieval: { k: 1, hit: returns.md } }
  - id: wrong-on-purpose
    description: acme's plan serves gpt-4o; this case claims gpt-4o-mini
    request: { body: ${chat('gpt-4o', 'hi')} }
    expect: { status: 200, upstream: { model: gpt-4o-mini } }
`,
    );
    write(
      dir,
      'globex/tenant.yaml',
      'api_key: globex-demo-key\nknowledge: [examples/knowledge/globex]\n',
    );
    write(
      dir,
      'globex/cases.yaml',
      `cases:
  - id: tier
    request: { body: ${chat('gpt-4o', 'hi')} }
    expect: { status: 200, headers: { x-model-served: gpt-4o-mini }, upstream: { model: gpt-4o-mini } }
  - id: tools
    request:
      body: { model: gpt-4o-mini, messages: [{ role: user, content: hi }], tools: [{ type: function, function: { name: search } }] }
    expect: { status: 200, upstream: { tools: [] } }
  - id: real-only
    requires: real
    request: { body: ${chat('gpt-4o-mini', 'hi')} }
    expect: { answer: { contains: hello } }
`,
    );
    write(
      dir,
      'baseline.json',
      JSON.stringify({
        version: 1,
        tenants: { acme: { rate: 1, cases: 4 }, globex: { rate: 1, cases: 2 } },
      }),
    );
    const out = path.join(dir, 'outcomes.json');
    const r = await runEval(
      ['--dir', dir, '--baseline', path.join(dir, 'baseline.json'), '--json', out],
      {},
    );
    t.log(r.stdout);
    t.is(r.code, 1, `exit 1: acme is below its baseline\n${r.stderr}`);
    t.regex(r.stdout, /^acme\s+4\s+3\s+75\.0%\s+100\.0%\s+0\s+FAIL$/m);
    t.regex(r.stdout, /^globex\s+2\s+2\s+100\.0%\s+100\.0%\s+1\s+ok$/m);
    t.regex(r.stdout, /^\(all\)\s+6\s+5\s+83\.3%/m);
    t.regex(
      r.stdout,
      /failed cases \(1\):\n\s+acme\/wrong-on-purpose \(.*cases\.yaml\)\n\s+upstream model: expected gpt-4o-mini, got "gpt-4o"/,
    );
    t.regex(r.stdout, /acme: below its baseline: 75\.0% < 100\.0%/);
    const outcomes = JSON.parse(readFileSync(out, 'utf8')) as Array<{
      tenant: string;
      id: string;
      outcome: string;
    }>;
    t.deepEqual(
      outcomes.map((o) => `${o.tenant}/${o.id}:${o.outcome}`),
      [
        'acme/persona:pass',
        'acme/tier:pass',
        'acme/retrieval:pass',
        'acme/wrong-on-purpose:fail',
        'globex/tier:pass',
        'globex/tools:pass',
        'globex/real-only:n/a',
      ],
    );
  },
);

test.serial(
  'against a provider with its own key: requests go through the tap with that key, answers are judged',
  async (t) => {
    const providerKey = 'sk-eval-provider-test';
    const provider = await startMockUpstream({ apiKey: providerKey });
    t.teardown(() => provider.close());
    // Positive control: the provider refuses a request without its key.
    const bare = await fetch(`${provider.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chat('gpt-4o', 'hi'),
    });
    t.is(bare.status, 401);
    const before = provider.received.length;

    const dir = mkdtempSync(path.join(tmpdir(), 'eval-e2e-real-'));
    write(
      dir,
      'acme/tenant.yaml',
      'api_key: acme-demo-key\nknowledge: [examples/knowledge/acme]\n',
    );
    write(
      dir,
      'acme/cases.yaml',
      `cases:
  - id: answer
    requires: real
    request: { body: ${chat('gpt-4o', 'hello from the provider test')} }
    expect:
      status: 200
      upstream: { persona: "${PERSONA}", model: gpt-4o }
      answer: { contains: "answer to: hello from the provider test", not_contains: KNOWLEDGE- }
  - id: mock-only
    requires: mock
    request: { body: ${chat('gpt-4o', 'hi')} }
    expect: { status: 200 }
`,
    );
    const baseline = path.join(dir, 'baseline.real.json');
    const r = await runEval(['--dir', dir, '--record-baseline'], {
      EVAL_BASE_URL: `${provider.url}/v1`,
      EVAL_API_KEY: providerKey,
    });
    t.log(r.stdout);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /through a recording tap/);
    t.regex(r.stdout, /^acme\s+1\s+1\s+100\.0%\s+100\.0%\s+1\s+ok$/m);
    t.deepEqual(JSON.parse(readFileSync(baseline, 'utf8')), {
      version: 1,
      tenants: { acme: { rate: 1, cases: 1 } },
    });
    const chats = provider.received.slice(before).filter((q) => q.path === '/v1/chat/completions');
    t.true(chats.length >= 1, 'the chain called the provider');
    for (const q of chats) {
      t.is(q.headers.authorization, `Bearer ${providerKey}`);
      const all = JSON.stringify(q.headers);
      t.false(all.includes('acme-demo-key'), "the tenant's key never reaches the provider");
      t.is(q.headers['x-eval-case'], undefined, "the eval's tag stays on this side");
    }
  },
);
