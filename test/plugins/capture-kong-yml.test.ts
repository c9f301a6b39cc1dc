/**
 * Request capture in the repo's own kong.yml, the whole chain (every plugin, both snippets),
 * on the gateway GATEWAY names: globex (opted in there) is captured as it sent its request —
 * the model it asked for, not the tier's rewrite — with what it got back; acme (not opted in)
 * leaves nothing; `npm run replay` finds globex's key in evals/globex/tenant.yaml and reports
 * no difference, and `--to-eval` writes a case the eval loader reads.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { CaptureKeyring } from '../../lib/capture/crypto';
import { loadCapture } from '../../lib/capture/store';
import type { CaptureRecord } from '../../lib/capture/record';
import { closeAllRedis, createRedis, waitForRedis } from '../../lib/redis/client';
import { createKeyspace } from '../../lib/redis/keys';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { loadEvalSets } from '../../scripts/eval/format';
import { Closers, ROOT, chat, eventually, send } from '../helpers/frontdoor';
import { startKongYmlDoor } from '../helpers/kong-yml-door';

const closers = new Closers();
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});

test('kong.yml: globex captured through the whole chain, acme never; replay to an eval case', async (t) => {
  const secretHex = randomBytes(32).toString('hex');
  const door = await startKongYmlDoor(closers.add, () => undefined, [], [], {
    env: { KTA_CAPTURE_SECRET: secretHex },
  });
  const namespace = `${door.namespace}tm`;
  const keys = createKeyspace(namespace);
  const ring = new CaptureKeyring(Buffer.from(secretHex, 'hex'));
  const redis = createRedis({
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    commandTimeoutMs: 3000,
  });
  await waitForRedis(redis, 5000);
  const ask = async (key: string, text: string) => {
    const r = await send(`${door.url}/v1/chat/completions`, {
      headers: [['authorization', `Bearer ${key}`]],
      body: chat(text, { model: 'gpt-4o' }),
    });
    t.is(r.status, 200, r.text);
    return String(r.headers['x-kong-request-id']);
  };
  const captured = (tenant: string, rid: string) =>
    eventually(async () => {
      const got = await loadCapture(redis, keys, ring, parseTenantId(tenant), rid);
      return got.kind === 'found' ? got.record : undefined;
    }, 15_000);

  const m = `kongyml-${randomBytes(4).toString('hex')}`;
  const acmeRid = await ask('acme-demo-key', `acme ${m}`);
  const globexRid = await ask('globex-demo-key', `globex ${m}`);
  const rec: CaptureRecord = await captured('globex', globexRid);
  t.deepEqual(JSON.parse(rec.request.body ?? '{}'), chat(`globex ${m}`, { model: 'gpt-4o' }));
  t.is(rec.outcome.modelRequested, 'gpt-4o');
  t.is(rec.outcome.modelServed, 'gpt-4o-mini', 'the free tier served its own model');
  t.is(rec.outcome.answer, `mock answer to: globex ${m}`);
  t.is(rec.request.headers.authorization, undefined);
  // acme's request came first: its log phase is long over; nothing of acme anywhere.
  t.is(await redis.exists(keys.capture(parseTenantId('acme'), acmeRid)), 0);
  t.is(await redis.exists(keys.captureOwner(acmeRid)), 0);

  const dir = mkdtempSync(path.join(tmpdir(), 'kta-capture-kongyml-'));
  const config = path.join(dir, 'kong.yml');
  writeFileSync(
    config,
    stringify({
      plugins: [{ name: 'token-meter', config: { redis: { key_namespace: namespace } } }],
    }),
  );
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'scripts', 'replay.ts'), ...args],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            KTA_CAPTURE_SECRET: secretHex,
            REPLAY_FRONTDOOR_URL: door.url,
            ...env,
          },
          timeout: 120_000,
        },
        (err, stdout, stderr) =>
          resolve({
            code: err ? Number((err as { code?: number }).code ?? 1) : 0,
            out: stdout + stderr,
          }),
      );
    });
  // The key from evals/globex/tenant.yaml (the repo's eval set), the tenant from the owner entry.
  const shown = await run([globexRid, '--config', config]);
  t.is(shown.code, 0, shown.out);
  t.regex(shown.out, /of tenant globex/);
  t.regex(shown.out, /no difference/);
  const written = await run([globexRid, '--config', config, '--to-eval', '--dir', dir], {
    REPLAY_API_KEY_GLOBEX: 'globex-demo-key',
  });
  t.is(written.code, 0, written.out);
  const c = loadEvalSets(dir, ROOT, {}, ['globex'])[0]?.cases[0];
  t.is(c?.expect.headers['x-model-served'], 'gpt-4o-mini');
  t.is(c?.expect.status, 200);
  // acme's request id has nothing to replay.
  const none = await run([acmeRid, '--config', config, '--no-send']);
  t.is(none.code, 1, none.out);
});
