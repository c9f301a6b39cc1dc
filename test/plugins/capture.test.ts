/**
 * Request capture end to end (issue 23), on the gateway GATEWAY names: a tenant whose plan or
 * override opted in has its request captured as sent (no credential) with its outcome, sealed
 * in its keyspace with the TTL; a tenant that did not opt in leaves nothing; `npm run replay`
 * replays a capture through the front door and writes it as an eval case the eval loader reads.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCapture } from '../../lib/capture/store';
import type { CaptureRecord } from '../../lib/capture/record';
import { closeAllRedis, createRedis, waitForRedis, type RedisClient } from '../../lib/redis/client';
import { parseTenantId } from '../../lib/tenant/tenant-id';
import { loadEvalSets } from '../../scripts/eval/format';
import { startCaptureDoor, type CaptureDoor } from '../helpers/capture-door';
import { Closers, ROOT, chat, eventually } from '../helpers/frontdoor';

const closers = new Closers();
let door: CaptureDoor | undefined;
let redis: RedisClient | undefined;

test.before(async () => {
  door = await startCaptureDoor(closers.add);
  redis = createRedis({
    url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    commandTimeoutMs: 3000,
  });
  await waitForRedis(redis, 5000);
});
test.after.always(async () => {
  await closers.closeAll();
  await closeAllRedis();
});

function ready(): { door: CaptureDoor; redis: RedisClient } {
  if (!door || !redis) throw new Error('the capture door did not start');
  return { door, redis };
}

/** The capture of `rid` once token-meter's log phase has stored it. */
function captured(tenant: string, rid: string): Promise<CaptureRecord> {
  const { door: d, redis: r } = ready();
  return eventually(async () => {
    const got = await loadCapture(r, d.keys, d.keyring, parseTenantId(tenant), rid);
    return got.kind === 'found' ? got.record : undefined;
  }, 15_000);
}

const marker = () => `marker-${randomBytes(5).toString('hex')}`;

test('an opted-in tenant’s request is captured as sent, without its key, with its outcome', async (t) => {
  const { door: d, redis: r } = ready();
  const m = marker();
  const res = await d.call('capa', chat(`what is ${m}?`, { model: 'gpt-4o', temperature: 0 }), [
    ['x-request-priority', 'high'],
    ['x-acme-token', 'should-not-be-kept'],
  ]);
  t.is(res.status, 200, res.text);
  t.regex(res.requestId, /^[0-9a-f]{16,}$/);
  const rec = await captured('capa', res.requestId);
  t.is(rec.tenant, 'capa');
  t.is(rec.plan, 'pro');
  t.is(rec.request.method, 'POST');
  t.is(rec.request.path, '/v1/chat/completions');
  t.deepEqual(
    JSON.parse(rec.request.body ?? '{}'),
    chat(`what is ${m}?`, { model: 'gpt-4o', temperature: 0 }),
  );
  t.deepEqual(rec.request.headers['x-request-priority'], ['high']);
  for (const h of ['apikey', 'authorization', 'x-acme-token'])
    t.is(rec.request.headers[h], undefined, h);
  t.is(rec.outcome.status, 200);
  t.is(rec.outcome.modelServed, 'gpt-4o');
  t.is(rec.outcome.stream, false);
  t.is(rec.outcome.answer, `mock answer to: what is ${m}?`);
  t.truthy(rec.outcome.usage && rec.outcome.usage.promptTokens > 0, JSON.stringify(rec.outcome));
  // Sealed at rest, with the configured TTL.
  const raw = String(await r.get(d.keys.capture(parseTenantId('capa'), res.requestId)));
  t.false(raw.includes(m));
  const ttl = Number(await r.ttl(d.keys.capture(parseTenantId('capa'), res.requestId)));
  t.true(ttl > 3000 && ttl <= 3600, `ttl ${ttl}`);
});

test('a streamed answer and a refusal are captured with what the tenant saw', async (t) => {
  const { door: d } = ready();
  const m = marker();
  const streamed = await d.call('capd', chat(`stream ${m}`, { stream: true }));
  t.is(streamed.status, 200);
  const rec = await captured('capd', streamed.requestId);
  t.true(rec.outcome.stream);
  t.is(rec.outcome.answer, `mock answer to: stream ${m}`);
  const refused = await d.call('capa', chat(`too big ${m}`, { max_tokens: 'many' }));
  t.is(refused.status, 400, refused.text);
  const code = (refused.json as { error: { code: string } }).error.code;
  const rec2 = await captured('capa', refused.requestId);
  t.is(rec2.outcome.status, 400);
  t.is(rec2.outcome.errorCode, code);
});

test('nothing is captured for tenants that did not opt in (plan without capture, override off)', async (t) => {
  const { door: d, redis: r } = ready();
  const sent: Array<[string, string]> = [];
  for (const tenant of ['capc', 'cape']) {
    const res = await d.call(tenant, chat(`not me ${marker()}`));
    t.is(res.status, 200, res.text);
    sent.push([tenant, res.requestId]);
  }
  // Positive control, sent after them: once its capture is stored, their log phases have run.
  const control = await d.call('capd', chat(`control ${marker()}`));
  await captured('capd', control.requestId);
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const [tenant, rid] of sent) {
    t.is(await r.exists(d.keys.capture(parseTenantId(tenant), rid)), 0, tenant);
    t.is(await r.exists(d.keys.captureOwner(rid)), 0, tenant);
    const theirs: string[] = [];
    for await (const batch of r.scanIterator({ MATCH: `${d.namespace}:{t:${tenant}}:capture:*` })) {
      theirs.push(...batch);
    }
    t.deepEqual(theirs, [], `${tenant} has no capture at all`);
  }
});

function replayCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'scripts', 'replay.ts'), ...args],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 120_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('npm run replay replays a capture through the front door and writes it as an eval case', async (t) => {
  const { door: d } = ready();
  const m = marker();
  const res = await d.call('capa', chat(`replay ${m}`, { model: 'gpt-4o' }));
  t.is(res.status, 200);
  await captured('capa', res.requestId);
  const evals = mkdtempSync(path.join(tmpdir(), 'kta-evals-'));
  const env = {
    KTA_CAPTURE_SECRET: d.secretHex,
    REPLAY_FRONTDOOR_URL: d.url,
    REPLAY_API_KEY_CAPA: 'capa-key',
  };
  const before = d.upstream.received.length;
  const out = await replayCli(
    [res.requestId, '--to-eval', '--config', d.configFile, '--dir', evals],
    env,
  );
  t.is(out.code, 0, out.stderr + out.stdout);
  t.regex(out.stdout, new RegExp(`capture: request ${res.requestId} of tenant capa`));
  t.regex(out.stdout, /no difference/);
  // The replay went through the chain to the upstream, as capa, with the captured body.
  const replayed = d.upstream.received
    .slice(before)
    .find((r) => r.rawBody.toString('utf8').includes(m));
  t.truthy(replayed, 'the upstream received the replayed request');
  t.is(replayed?.headers['x-tenant-id'], 'capa');
  const sets = loadEvalSets(evals, ROOT, {}, ['capa']);
  const c = sets[0]?.cases[0];
  t.is(c?.id, `replay-${res.requestId.slice(0, 16)}`);
  t.deepEqual(c?.request.body, chat(`replay ${m}`, { model: 'gpt-4o' }));
  t.is(c?.expect.status, 200);
  t.is(c?.expect.headers['x-model-served'], 'gpt-4o');
  const file = readFileSync(path.join(evals, 'capa', 'regressions', `${c?.id}.yaml`), 'utf8');
  t.false(/capa-key|apikey|authorization/i.test(file), 'no credential in the case file');
});
